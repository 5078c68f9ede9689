from shared.settings import Settings


def test_postgres_urls_get_the_psycopg_driver():
    for url in ("postgres://u:p@h/db", "postgresql://u:p@h/db"):
        assert Settings(database_url=url).database_url == "postgresql+psycopg://u:p@h/db"


def test_with_nothing_set_everything_is_embedded(tmp_path):
    settings = Settings(var_dir=tmp_path, database_url="", broker_url="")
    assert settings.effective_database_url == f"sqlite:///{tmp_path / 'itemflow.db'}"
    assert settings.is_embedded_broker
    assert settings.files_dir == tmp_path / "files"
    assert settings.max_upload_bytes == 100 * 1024 * 1024

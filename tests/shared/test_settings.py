import pytest
from pydantic import ValidationError

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


def test_time_limits_are_set_per_model_type():
    settings = Settings(time_limits={"stt": (1800, 2400)}, visibility_timeout_seconds=3600)
    assert settings.time_limits_for("stt") == (1800, 2400)
    assert settings.time_limits_for("ocr") == (600, 900)


def test_a_visibility_timeout_shorter_than_a_run_is_refused():
    with pytest.raises(ValidationError, match="VISIBILITY_TIMEOUT_SECONDS"):
        Settings(time_limits={"stt": (3000, 3600)}, visibility_timeout_seconds=3600)

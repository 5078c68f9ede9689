import json
from pathlib import Path

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


def test_the_heartbeat_must_come_within_the_lease():
    with pytest.raises(ValidationError, match="JOB_HEARTBEAT_SECONDS"):
        Settings(job_lease_seconds=10, job_heartbeat_seconds=10)
    with pytest.raises(ValidationError, match="JOB_HEARTBEAT_SECONDS"):
        Settings(job_heartbeat_seconds=0)
    assert Settings(job_lease_seconds=3, job_heartbeat_seconds=1).job_lease_seconds == 3


def test_the_shutdown_grace_period_cannot_be_negative():
    with pytest.raises(ValidationError, match="WORKER_SHUTDOWN_GRACE_SECONDS|greater than"):
        Settings(worker_shutdown_grace_seconds=-1)


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ("{nope", "PROVIDERS is not valid JSON"),
        ("[]", "must be an object of provider name"),
        ("{}", "must be an object of provider name"),
        ('{"Open AI": {"protocol": "openai", "base_url": "https://x"}}', "provider name 'Open AI'"),
        ('{"x": {"protocol": "grpc", "base_url": "https://x"}}', "provider 'x': protocol"),
        ('{"x": {"protocol": "openai", "base_url": "ftp://x"}}', "base_url: .*http"),
        (
            '{"x": {"protocol": "openai", "base_url": "https://x", "api_key_env": "A B"}}',
            "api_key_env",
        ),
        (
            '{"x": {"protocol": "openai", "base_url": "https://x", "max_concurrency": 0}}',
            "max_concurrency",
        ),
        ('{"x": {"protocol": "openai", "base_url": "https://x", "api_key": "sk-1"}}', "api_key"),
    ],
)
def test_a_mistake_in_the_declaration_stops_the_settings(declared: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(providers=declared)


def test_declaring_in_both_places_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "providers.json"
    file.write_text(json.dumps({"x": {"protocol": "openai", "base_url": "https://x"}}))
    assert list(Settings(providers_file=file).provider_connections) == ["x"]
    with pytest.raises(ValidationError, match="not both"):
        Settings(providers='{"y": {}}', providers_file=file)


def test_a_settings_error_never_shows_a_secret() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(secrets_key="not-a-fernet-key-but-a-secret", providers="{nope")
    assert "not-a-fernet-key-but-a-secret" not in str(raised.value)
    assert "SECRETS_KEY" in str(raised.value)
    # An operator who pasted the key where its variable's name goes, or a
    # password into the URL.
    pasted = {
        "x": {
            "protocol": "openai",
            "base_url": "ftp://u:hunter2@x",
            "api_key_env": "sk-proj-SECRET",
        }
    }
    with pytest.raises(ValidationError) as raised:
        Settings(providers=json.dumps(pasted))
    assert "api_key_env" in str(raised.value) and "base_url" in str(raised.value)
    assert "SECRET" not in str(raised.value) and "hunter2" not in str(raised.value)


def test_storage_url_names_a_directory_or_a_bucket(tmp_path):
    assert Settings(var_dir=tmp_path).files_dir == tmp_path / "files"
    assert Settings(storage_dir=tmp_path / "kept").files_dir == tmp_path / "kept"
    local = Settings(storage_url=f"file://{tmp_path}/elsewhere/", storage_dir=tmp_path / "kept")
    assert (local.files_dir, local.is_s3_storage) == (tmp_path / "elsewhere", False)
    bucket = Settings(storage_url="s3://my-bucket")
    assert (bucket.is_s3_storage, bucket.s3_bucket_and_prefix) == (True, ("my-bucket", ""))
    nested = Settings(storage_url="s3://my.bucket/item/files/")
    assert nested.s3_bucket_and_prefix == ("my.bucket", "item/files/")


@pytest.mark.parametrize(
    "url",
    [
        "/var/files",
        "file://relative/path",
        "files",
        "s3://",
        "s3://Upper",
        "s3://ab",
        "s3://key:secret@bucket",
        "s3://bucket/a//b",
        "s3://bucket?region=x",
        "gs://bucket",
    ],
)
def test_a_bad_storage_url_is_refused_at_start(url):
    with pytest.raises(ValidationError, match="STORAGE_URL") as refused:
        Settings(storage_url=url)
    # Named, never echoed: it could hold a secret.
    assert "secret" not in str(refused.value)


def test_s3_settings_are_checked():
    with pytest.raises(ValidationError, match="S3_ENDPOINT_URL"):
        Settings(s3_endpoint_url="127.0.0.1:8333")
    with pytest.raises(ValidationError, match="s3_addressing_style"):
        Settings(s3_addressing_style="sideways")
    assert Settings(s3_endpoint_url="http://127.0.0.1:8333").s3_addressing_style == "auto"


def test_get_storage_follows_the_settings(monkeypatch, tmp_path):
    from shared.settings import get_settings
    from shared.storage import get_storage
    from shared.storage.local import LocalStorage
    from shared.storage.s3 import S3Storage

    monkeypatch.setenv("STORAGE_URL", "s3://some-bucket/files")
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("S3_REGION", "us-east-1")
    get_settings.cache_clear()
    try:
        storage = get_storage()
        assert isinstance(storage, S3Storage)
        assert (storage.bucket, storage.prefix) == ("some-bucket", "files/")
        assert get_storage() is storage, "one client per process"
        monkeypatch.setenv("STORAGE_URL", f"file://{tmp_path}")
        get_settings.cache_clear()
        local = get_storage()
        assert isinstance(local, LocalStorage) and local.root == tmp_path
    finally:
        get_settings.cache_clear()

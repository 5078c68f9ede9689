"""Settings, read once from the environment (and an optional `.env`).

With nothing set, everything runs embedded under `./var/`: SQLite for the
database, Celery's filesystem broker and a files directory. Setting
DATABASE_URL and BROKER_URL switches to PostgreSQL and Redis.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.provider_config import AllowedHosts, ProviderConnection, load_connections

MIB = 1024 * 1024


class Settings(BaseSettings):
    # An error names the setting, never its value: some hold passwords and keys.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", hide_input_in_errors=True)

    var_dir: Path = Path("var")
    database_url: str = ""
    broker_url: str = ""
    storage_dir: Path | None = None
    # Where item files live: file:///absolute/path, or s3://bucket[/prefix]
    # for S3 and S3-compatible object stores. Unset: STORAGE_DIR, or
    # var/files. S3 credentials come only from boto3's own chain (the AWS_*
    # variables, a profile, an instance role), never from these settings.
    storage_url: str = ""
    # For S3-compatible servers (SeaweedFS, MinIO, R2, ...); unset is AWS.
    s3_endpoint_url: str = ""
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    s3_region: str = ""

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = Field(default=1, ge=1)
    # /metrics answers a loopback client without a key; any other only with
    # `Authorization: Bearer <METRICS_TOKEN>`, and none while it is empty.
    metrics_token: str = ""
    # Where the API's and the workers' processes keep their metrics
    # (Prometheus's multiprocess files); empty: VAR_DIR/metrics. Processes
    # on one machine that share it are summed in one /metrics.
    metrics_dir: Path | None = None
    # A worker's own /metrics, for a worker on a machine of its own (0: none).
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    flower_host: str = "127.0.0.1"
    flower_port: int = 5555
    # "user:password" pairs separated by commas; empty means no auth, which
    # `itemflow flower` only allows on a loopback address.
    flower_basic_auth: str = ""

    # The Celery queue jobs go to; separate installations (or test runs) on
    # one Redis keep apart by using different names.
    queue_name: str = "itemflow"

    # Failed authentications allowed per client address and minute, per API
    # process; past that the API answers 429 until the minute has passed.
    auth_failures_per_minute: int = 30
    # How long an API process trusts a key it found, without asking the
    # database again (0: ask every time); a deleted key works this long.
    api_key_cache_seconds: float = Field(default=5.0, ge=0)

    max_upload_bytes: int = 100 * MIB
    # A dataset zip imported at once (each file in it is held to
    # max_upload_bytes), and how many entries it may hold.
    max_import_bytes: int = 4096 * MIB
    max_import_entries: int = 100_000
    max_json_bytes: int = 1 * MIB
    # PDFs with more pages are refused by OCR rather than read for hours.
    max_pdf_pages: int = 200

    # Bounds on a database statement and on a wait for a row lock
    # (PostgreSQL), by kind of process. No normal request or job comes near
    # them: they end a wait on a stuck server, or on a lock a forgotten
    # session holds, with a 503 (the API) or a retry (a worker) instead of
    # holding the request or the job without end. Migrations have none.
    api_statement_timeout_seconds: float = Field(default=30.0, gt=0)
    api_lock_timeout_seconds: float = Field(default=10.0, gt=0)
    worker_statement_timeout_seconds: float = Field(default=300.0, gt=0)
    worker_lock_timeout_seconds: float = Field(default=60.0, gt=0)

    job_max_attempts: int = 3
    # Back-off before an automatic retry: base * 2**(attempts - 1), capped.
    retry_backoff_seconds: float = 2.0
    retry_backoff_max_seconds: float = 300.0
    # Redis redelivers a message not acknowledged within this time. It must be
    # longer than any job runs, or a slow job would be delivered twice (the
    # guarded claim then drops the second copy, but it wastes a worker).
    visibility_timeout_seconds: int = 3600
    task_soft_time_limit_seconds: int = 600
    task_time_limit_seconds: int = 900
    # Per model type, [soft, hard] seconds, e.g. '{"stt": [1800, 2400]}'. A
    # soft limit ends the attempt as a transient failure; a hard limit kills
    # the worker process running it, and counts the same.
    time_limits: dict[str, tuple[int, int]] = {}
    # Load every model when a worker process starts rather than on its first job.
    preload_models: bool = True
    worker_concurrency: int = 0  # 0: Celery's default, the number of CPUs
    # Threads of a worker for the external queue (`itemflow worker --pool
    # threads`): how many provider calls it waits on at once.
    io_worker_concurrency: int = Field(default=64, ge=1)

    # A claimed job is leased to its worker for this long; while the model
    # runs, the worker renews the lease every heartbeat. A job whose lease ran
    # out has lost its worker and is taken back by the reaper.
    job_lease_seconds: float = 60.0
    job_heartbeat_seconds: float = 15.0
    # A worker told to stop (SIGTERM) lets running jobs finish for this long,
    # then stops them and puts them back to pending for another worker.
    worker_shutdown_grace_seconds: float = Field(default=30.0, ge=0)

    # The reaper: how often it sweeps; how long a pending job may wait with no
    # message before one is sent again (longer than any back-off); for a
    # `processing` job without a lease (claimed before leases existed), how
    # long past the hard time limit it is taken back.
    reaper_interval_seconds: float = 30.0
    reaper_pending_after_seconds: float = 600.0
    reaper_processing_margin_seconds: float = 60.0

    # Extra post-processor classes, "module:Class" separated by commas, loaded
    # beside the `itemflow.post_processors` entry points.
    post_processors: str = ""

    # The LLM providers workers may call: JSON in PROVIDERS, or a TOML (or
    # .json) file named by PROVIDERS_FILE; unset, the built-in openai and
    # anthropic at their public endpoints. See shared/provider_config.py.
    providers: str = ""
    providers_file: Path | None = None
    # Loopback, private or link-local hosts that a user's own base_url may
    # reach all the same: names, addresses and CIDR ranges, comma-separated.
    provider_allowed_hosts: str = ""
    # Fernet keys that encrypt the provider keys users store, comma-separated:
    # the first encrypts, all decrypt (to rotate, put a new one first).
    # Unset: one generated in SECRETS_KEY_FILE, which the API and every
    # worker must then share.
    secrets_key: SecretStr = SecretStr("")
    secrets_key_file: Path | None = None

    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        # Platforms hand out postgres:// URLs; SQLAlchemy needs the driver.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @field_validator("storage_url")
    @classmethod
    def _storage_url_is_a_place(cls, value: str) -> str:
        if not value:
            return value
        # No credentials in it (they come from boto3's chain), no query: a
        # URL that cannot be read exactly as written is refused.
        parts = urlsplit(value)
        if parts.scheme == "file" and not parts.netloc and parts.path.startswith("/"):
            if parts.query or parts.fragment:
                raise ValueError(_STORAGE_URL_FORMS)
            return "file://" + parts.path.rstrip("/")
        if parts.scheme == "s3":
            if "@" in parts.netloc or ":" in parts.netloc or parts.query or parts.fragment:
                raise ValueError(_STORAGE_URL_FORMS)
            if not _BUCKET_NAME.fullmatch(parts.netloc):
                raise ValueError(
                    "STORAGE_URL: the bucket name must be 3 to 63 lowercase letters, digits, "
                    "dots or hyphens, starting and ending with a letter or digit"
                )
            prefix = parts.path.strip("/")
            if "//" in prefix:
                raise ValueError("STORAGE_URL: the prefix has an empty path segment")
            return f"s3://{parts.netloc}/{prefix}" if prefix else f"s3://{parts.netloc}"
        raise ValueError(_STORAGE_URL_FORMS)

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint_is_http(cls, value: str) -> str:
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError("S3_ENDPOINT_URL must be an http:// or https:// URL")
        if parts.username or parts.password:
            raise ValueError("S3_ENDPOINT_URL must not hold credentials")
        return value

    def time_limits_for(self, model_type: str) -> tuple[int, int]:
        return self.time_limits.get(
            model_type, (self.task_soft_time_limit_seconds, self.task_time_limit_seconds)
        )

    @property
    def longest_time_limit(self) -> int:
        return max([self.task_time_limit_seconds, *(hard for _, hard in self.time_limits.values())])

    @model_validator(mode="after")
    def _limits_fit_the_visibility_timeout(self) -> Settings:
        # Redis hands an unacknowledged message to another worker after the
        # visibility timeout: were it shorter than a run plus its back-off,
        # a slow job would be delivered twice.
        needed = self.longest_time_limit + self.retry_backoff_max_seconds
        if self.visibility_timeout_seconds <= needed:
            raise ValueError(
                f"VISIBILITY_TIMEOUT_SECONDS ({self.visibility_timeout_seconds}) must be longer "
                f"than the longest hard time limit plus the back-off cap ({needed:g})"
            )
        for model_type, (soft, hard) in self.time_limits.items():
            if not 0 < soft < hard:
                raise ValueError(f"TIME_LIMITS[{model_type!r}]: need 0 < soft < hard")
        return self

    @model_validator(mode="after")
    def _reaper_waits_out_back_offs(self) -> Settings:
        if self.reaper_pending_after_seconds <= self.retry_backoff_max_seconds:
            raise ValueError(
                "REAPER_PENDING_AFTER_SECONDS must be longer than RETRY_BACKOFF_MAX_SECONDS, "
                "or the reaper would resend jobs that are only waiting out their back-off"
            )
        return self

    @field_validator("secrets_key")
    @classmethod
    def _fernet_keys(cls, value: SecretStr) -> SecretStr:
        for index, key in enumerate(split_keys(value)):
            try:
                raw = base64.urlsafe_b64decode(key.encode("ascii"))
            except (binascii.Error, UnicodeEncodeError, ValueError):
                raw = b""
            if len(raw) != 32:
                # Never echo the value: it is a secret, even when malformed.
                raise ValueError(
                    f"SECRETS_KEY: key {index + 1} is not a Fernet key (32 url-safe base64 "
                    "bytes); make one with `itemflow secrets-key`"
                )
        return value

    @model_validator(mode="after")
    def _providers_are_declared_well(self) -> Settings:
        # Read now, so that a mistake stops every process at start.
        _ = self.provider_connections, self.allowed_hosts
        return self

    @cached_property
    def provider_connections(self) -> dict[str, ProviderConnection]:
        return load_connections(self.providers, self.providers_file)

    @cached_property
    def allowed_hosts(self) -> AllowedHosts:
        return AllowedHosts.parse(self.provider_allowed_hosts)

    @property
    def secrets_keys(self) -> list[str]:
        return split_keys(self.secrets_key)

    @property
    def secrets_key_path(self) -> Path:
        return (self.secrets_key_file or self.var_dir / "secrets.key").resolve()

    @property
    def provider_slots_dir(self) -> Path:
        return (self.var_dir / "provider-slots").resolve()

    @model_validator(mode="after")
    def _heartbeats_keep_the_lease(self) -> Settings:
        # A lease that runs out between two heartbeats would let the reaper
        # take a job from a worker that is alive and running it.
        if not 0 < self.job_heartbeat_seconds < self.job_lease_seconds:
            raise ValueError(
                f"JOB_HEARTBEAT_SECONDS ({self.job_heartbeat_seconds:g}) must be more than 0 "
                f"and less than JOB_LEASE_SECONDS ({self.job_lease_seconds:g})"
            )
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.var_dir / 'itemflow.db').resolve()}"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def metrics_folder(self) -> Path:
        return (self.metrics_dir or self.var_dir / "metrics").resolve()

    @property
    def broker_folder(self) -> Path:
        return (self.var_dir / "broker").resolve()

    @property
    def files_dir(self) -> Path:
        """The local files directory (not used when STORAGE_URL is s3://)."""
        if self.storage_url.startswith("file://"):
            return Path(self.storage_url.removeprefix("file://") or "/")
        return (self.storage_dir or self.var_dir / "files").resolve()

    @property
    def is_s3_storage(self) -> bool:
        return self.storage_url.startswith("s3://")

    @property
    def s3_bucket_and_prefix(self) -> tuple[str, str]:
        """The bucket and the key prefix ("" or ending in "/") of an
        s3:// STORAGE_URL."""
        bucket, _, prefix = self.storage_url.removeprefix("s3://").partition("/")
        return bucket, prefix + "/" if prefix else ""

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def is_embedded_broker(self) -> bool:
        return self.effective_broker_url.startswith("filesystem://")

    @property
    def is_rabbitmq_broker(self) -> bool:
        return self.effective_broker_url.startswith(("amqp://", "amqps://", "pyamqp://"))

    @model_validator(mode="after")
    def _queue_name_is_a_routing_word(self) -> Settings:
        # On RabbitMQ the queues hang off topic exchanges (shared/broker.py),
        # where "." separates the words of a routing key and "*" and "#" are
        # wildcards: such a name could route one installation's delayed
        # messages into another's queue.
        if self.is_rabbitmq_broker and any(sign in self.queue_name for sign in ".*#"):
            raise ValueError("QUEUE_NAME: on RabbitMQ it may not hold '.', '*' or '#'")
        return self


_STORAGE_URL_FORMS = "STORAGE_URL must be file:///absolute/path or s3://bucket[/prefix]"
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def split_keys(value: SecretStr) -> list[str]:
    return [part.strip() for part in value.get_secret_value().split(",") if part.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()

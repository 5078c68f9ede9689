"""The storage interface, the same tests on a local directory and on a real
S3 server (SeaweedFS): what is stored comes back byte-exact, and a refused,
failed or cancelled upload leaves nothing behind."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from shared.errors import PayloadTooLarge, StorageUnavailable
from shared.storage import HEAD_BYTES, StagedFile, Storage
from shared.storage.local import LocalStorage
from shared.storage.s3 import PART_BYTES, S3Storage
from tests.s3 import REGION, S3Server

MIB = 1024 * 1024
CHUNK = 64 * 1024


@dataclass
class Place:
    storage: Storage
    # What is in the place: files, objects, unfinished multipart uploads.
    leftovers: Callable[[], set[str]]
    # The name a key is stored under, to list it.
    name_of: Callable[[str], str]


def s3_storage(server: S3Server, prefix: str, bucket: str | None = None) -> S3Storage:
    return S3Storage(
        bucket or server.bucket,
        prefix,
        endpoint_url=server.endpoint,
        addressing_style="path",
        region=REGION,
    )


@pytest.fixture(params=["local", "s3"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    if request.param == "local":
        root = tmp_path / "files"

        def files() -> set[str]:
            return {path.name for path in root.iterdir()} if root.exists() else set()

        return Place(LocalStorage(root), files, lambda key: key)
    server = request.getfixturevalue("s3_server")
    prefix = request.getfixturevalue("s3_prefix")
    request.getfixturevalue("s3_credentials")
    return Place(
        s3_storage(server, prefix), lambda: server.objects(prefix), lambda key: prefix + key
    )


async def chunks_of(data: bytes, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        if fail_after is not None and start >= fail_after:
            raise RuntimeError("the client went away")
        yield data[start : start + CHUNK]


def stage(storage: Storage, data: bytes, limit: int = 100 * MIB) -> StagedFile:
    return anyio.run(storage.stage, chunks_of(data), limit)


def test_a_file_comes_back_as_it_was_staged(place):
    data = os.urandom(300_000)
    staged = stage(place.storage, data)

    assert (staged.size, staged.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert staged.head == data[:HEAD_BYTES]
    assert place.leftovers() == {place.name_of(staged.key)}
    with place.storage.open(staged.key) as stream:
        assert stream.read(1000) + stream.read() == data
    with place.storage.local_path(staged.key) as path:
        assert path.read_bytes() == data
    place.storage.delete(staged.key)
    assert place.leftovers() == set()


def test_an_empty_file_is_stored(place):
    staged = stage(place.storage, b"")
    assert (staged.size, staged.head) == (0, b"")
    with place.storage.open(staged.key) as stream:
        assert stream.read() == b""
    place.storage.delete(staged.key)


def test_a_file_of_several_parts_comes_back_byte_exact(place):
    # Past two parts, and not a multiple of the part size.
    data = os.urandom(2 * PART_BYTES + 4 * MIB + 123)
    staged = stage(place.storage, data)

    assert staged.sha256 == hashlib.sha256(data).hexdigest()
    with place.storage.local_path(staged.key) as path:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == staged.sha256
    with place.storage.open(staged.key) as stream:
        assert hashlib.sha256(stream.read()).hexdigest() == staged.sha256
    if isinstance(place.storage, S3Storage):
        # A multipart upload's ETag ends in its number of parts.
        client = place.storage._client
        etag = client.head_object(Bucket=place.storage.bucket, Key=place.name_of(staged.key))
        assert etag["ETag"].strip('"').endswith("-3"), etag["ETag"]
    place.storage.delete(staged.key)


def test_a_file_over_the_limit_leaves_nothing(place):
    # Refused in its third part, after two parts went up.
    data = b"x" * (2 * PART_BYTES + MIB)
    with pytest.raises(PayloadTooLarge, match=f"limit of {2 * PART_BYTES + 10} bytes"):
        stage(place.storage, data, limit=2 * PART_BYTES + 10)
    assert place.leftovers() == set()


@pytest.mark.parametrize("fail_after", [CHUNK, PART_BYTES + 2 * CHUNK])
def test_a_stream_failing_midway_leaves_nothing(place, fail_after):
    data = os.urandom(PART_BYTES + 4 * CHUNK)
    with pytest.raises(RuntimeError, match="the client went away"):
        anyio.run(place.storage.stage, chunks_of(data, fail_after), 100 * MIB)
    assert place.leftovers() == set()


def test_a_cancelled_upload_leaves_nothing(place):
    async def stalls_after_a_part() -> AsyncIterator[bytes]:
        async for chunk in chunks_of(b"y" * (PART_BYTES + CHUNK)):
            yield chunk
        await anyio.sleep_forever()

    async def main() -> None:
        with anyio.move_on_after(1) as scope:
            await place.storage.stage(stalls_after_a_part(), 100 * MIB)
        assert scope.cancelled_caught

    anyio.run(main)
    assert place.leftovers() == set()


def test_a_missing_file(place):
    key = "0" * 32
    with pytest.raises(FileNotFoundError):
        place.storage.open(key)
    # As on disk: the path is there to give, the file is not.
    with place.storage.local_path(key) as path:
        assert not path.exists()
    place.storage.delete(key)
    assert place.leftovers() == set()


def test_the_storage_answers_its_check(place):
    place.storage.check()


def test_keys_are_stored_under_the_prefix(s3_server, s3_credentials):
    prefix = f"deep/{os.urandom(4).hex()}/"
    storage = s3_storage(s3_server, prefix)
    staged = stage(storage, b"under a prefix")
    assert s3_server.objects(prefix) == {prefix + staged.key}
    assert len(staged.key) == 32 and "/" not in staged.key
    storage.delete(staged.key)
    assert s3_server.objects(prefix) == set()


def test_a_missing_bucket_is_named(s3_server, s3_credentials):
    storage = s3_storage(s3_server, "", bucket="no-such-bucket")
    with pytest.raises(StorageUnavailable, match="bucket 'no-such-bucket' does not exist"):
        storage.check()
    # A missing bucket is an outage, not a missing file.
    with pytest.raises(StorageUnavailable):
        storage.open("0" * 32)
    with pytest.raises(StorageUnavailable), storage.local_path("0" * 32):
        pass


def test_refused_credentials_are_named(s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "itemflow-test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    storage = s3_storage(s3_server, "")
    with pytest.raises(StorageUnavailable, match="credentials were refused"):
        storage.check()
    with pytest.raises(StorageUnavailable, match="credentials were refused"):
        stage(storage, b"never stored")


def test_an_unreachable_server_is_named(s3_credentials):
    from tests.fixtures import free_port

    storage = S3Storage(
        "itemflow-test", endpoint_url=f"http://127.0.0.1:{free_port()}", region=REGION
    )
    with pytest.raises(StorageUnavailable, match="cannot reach S3 at http://127.0.0.1"):
        storage.check()


def test_job_files_left_by_killed_processes_are_removed(tmp_path, monkeypatch):
    from shared.storage.s3 import DOWNLOAD_PREFIX, remove_stale_downloads

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    stale, fresh, other = (
        tmp_path / f"{DOWNLOAD_PREFIX}stale",
        tmp_path / f"{DOWNLOAD_PREFIX}fresh",
        tmp_path / "someone-elses",
    )
    for path in (stale, fresh, other):
        path.write_bytes(b"x")
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    os.utime(other, (hour_ago, hour_ago))

    assert remove_stale_downloads(older_than_seconds=900) == 1

    assert not stale.exists() and fresh.exists() and other.exists()

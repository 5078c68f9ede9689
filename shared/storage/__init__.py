"""Where item files live: a local directory (`local.py`) or an S3 bucket
(`s3.py`), behind one small interface, so that callers never know which."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, Protocol

from shared.errors import StorageUnavailable

if TYPE_CHECKING:
    from shared.settings import Settings

# The first bytes of an upload, kept to tell the kind of file.
HEAD_BYTES = 8192


@dataclass(frozen=True)
class StagedFile:
    """An upload written to storage but not yet part of any item."""

    key: str
    size: int
    sha256: str
    head: bytes  # the first bytes, to tell the kind of file


class Storage(Protocol):
    # Where the files are, for logs and the `itemflow up` banner.
    location: str

    async def stage(
        self, chunks: AsyncIterator[bytes], limit: int, key: str | None = None
    ) -> StagedFile:
        """Store chunks as they arrive under a new key (or `key`, when a file
        is copied from another storage); past `limit` bytes, or on any error
        or cancellation, keep nothing and raise."""
        ...

    def size(self, key: str) -> int | None:
        """The stored file's size; None when it is missing."""
        ...

    def open(self, key: str) -> BinaryIO:
        """The file, for reading; FileNotFoundError when it is missing."""
        ...

    def local_path(self, key: str) -> AbstractContextManager[Path]:
        """A path to the file on this machine while the block runs; it does
        not exist when the file is missing."""
        ...

    def delete(self, key: str) -> None:
        """Delete the file; a missing one is no error."""
        ...

    def check(self) -> None:
        """Raise StorageUnavailable, with the reason, when files can be
        neither read nor written."""
        ...


async def read_chunks(stream: IO[bytes], size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    """A file's bytes as chunks for `stage` or a streamed answer, each read
    in a thread: on an object store, reading is a request."""
    import anyio.to_thread

    while chunk := await anyio.to_thread.run_sync(stream.read, size):
        yield chunk


def get_storage() -> Storage:
    """The storage the settings name, one per process (an S3 client and its
    connection pool are made once, and never shared with a forked child)."""
    from shared.settings import get_settings

    settings = get_settings()
    config = (
        os.getpid(),
        settings.storage_url,
        settings.files_dir,
        settings.s3_endpoint_url,
        settings.s3_addressing_style,
        settings.s3_region,
    )
    with _lock:
        storage = _storages.get(config)
        if storage is None:
            storage = _storages[config] = _open_storage()
        return storage


def _open_storage() -> Storage:
    from shared.settings import get_settings

    return open_storage(get_settings())


def open_storage(settings: Settings) -> Storage:
    """A new storage for these settings' STORAGE_URL."""
    if settings.is_s3_storage:
        from shared.storage.s3 import S3Storage

        bucket, prefix = settings.s3_bucket_and_prefix
        return S3Storage(
            bucket,
            prefix,
            endpoint_url=settings.s3_endpoint_url or None,
            addressing_style=settings.s3_addressing_style,
            region=settings.s3_region or None,
        )
    from shared.storage.local import LocalStorage

    return LocalStorage(settings.files_dir)


_lock = threading.Lock()
_storages: dict[tuple[object, ...], Storage] = {}


def report_unavailable(log: logging.Logger) -> None:
    """At a process's start: one line in the log when the storage cannot be
    used. The process runs on, as it does while the database is down; its
    jobs are retried and /readyz names the storage until it answers."""
    storage = get_storage()
    try:
        storage.check()
    except StorageUnavailable as error:
        log.error("event=storage.unavailable storage=%s reason=%s", storage.location, error.detail)


__all__ = [
    "HEAD_BYTES",
    "StagedFile",
    "Storage",
    "StorageUnavailable",
    "get_storage",
    "open_storage",
    "read_chunks",
    "report_unavailable",
]

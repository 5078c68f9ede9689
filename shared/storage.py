"""Where item files live. A small interface, so that an object store can be
added beside the local directory without touching the callers."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from shared.errors import PayloadTooLarge


@dataclass(frozen=True)
class StagedFile:
    """An upload written to storage but not yet part of any item."""

    key: str
    size: int
    sha256: str
    head: bytes  # the first bytes, to tell the kind of file


class Storage(Protocol):
    async def stage(self, chunks: AsyncIterator[bytes], limit: int) -> StagedFile: ...

    def open(self, key: str) -> BinaryIO: ...

    @contextmanager
    def local_path(self, key: str) -> Iterator[Path]: ...

    def delete(self, key: str) -> None: ...


HEAD_BYTES = 8192


class LocalStorage:
    """Files in one directory, one file per key."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        # Keys are made here, never taken from a client, but refuse anything
        # that could leave the root all the same.
        if not key or "/" in key or "\\" in key or key.startswith("."):
            raise ValueError(f"invalid storage key {key!r}")
        return self.root / key

    async def stage(self, chunks: AsyncIterator[bytes], limit: int) -> StagedFile:
        """Write chunks to a new file as they arrive; past `limit` bytes,
        remove what was written and raise PayloadTooLarge."""
        self.root.mkdir(parents=True, exist_ok=True)
        key = uuid.uuid4().hex
        path = self._path(key)
        digest = hashlib.sha256()
        size = 0
        head = b""
        try:
            with open(path, "xb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(
                            f"The file is larger than the limit of {limit} bytes."
                        )
                    if len(head) < HEAD_BYTES:
                        head += chunk[: HEAD_BYTES - len(head)]
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return StagedFile(key=key, size=size, sha256=digest.hexdigest(), head=head)

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    @contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        # An object store would download to a temporary file here.
        yield self._path(key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def get_storage() -> Storage:
    from shared.settings import get_settings

    return LocalStorage(get_settings().files_dir)

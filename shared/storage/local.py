"""Files in one local directory, one file per key."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from shared.errors import PayloadTooLarge, StorageUnavailable
from shared.storage import HEAD_BYTES, StagedFile


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def _path(self, key: str) -> Path:
        # Keys are made here, never taken from a client, but refuse anything
        # that could leave the root all the same.
        if not key or "/" in key or "\\" in key or key.startswith("."):
            raise ValueError(f"invalid storage key {key!r}")
        return self.root / key

    async def stage(
        self, chunks: AsyncIterator[bytes], limit: int, key: str | None = None
    ) -> StagedFile:
        """Write chunks to a new file as they arrive; past `limit` bytes,
        remove what was written and raise PayloadTooLarge."""
        self.root.mkdir(parents=True, exist_ok=True)
        key = key or uuid.uuid4().hex
        path = self._path(key)
        digest = hashlib.sha256()
        size = 0
        head = b""
        # Before the try: a file already there is another's, and not removed.
        out = open(path, "xb")  # noqa: SIM115 - closed by the with below
        try:
            with out:
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

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    @contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        yield self._path(key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageUnavailable(f"cannot create {self.root}: {error.strerror}") from error
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageUnavailable(f"{self.root} is not writable")

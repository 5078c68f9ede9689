"""Copy an installation's files to another storage (local disk to a bucket,
or back) before pointing STORAGE_URL at it. Every file a row points at is
copied under the same key and checked against the sha256 and size the row
recorded; a file already there whole is skipped, so an interrupted copy
resumes where it stopped. Nothing is deleted from the source."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.errors import PayloadTooLarge
from shared.models import DatasetItem, OnnxModel
from shared.storage import Storage

CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class StoredFile:
    key: str
    size: int
    sha256: str  # empty: not recorded (then only the size is checked)


@dataclass
class CopyReport:
    copied: int = 0
    skipped: int = 0  # already in the target, whole
    missing: list[str] = field(default_factory=list)  # not in the source
    mismatched: list[str] = field(default_factory=list)  # not what the row says

    @property
    def ok(self) -> bool:
        return not (self.missing or self.mismatched)


def stored_files(session: Session) -> list[StoredFile]:
    """Every file a row points at: items' files and registered models."""
    items = session.execute(
        select(DatasetItem.file_key, DatasetItem.file_size, DatasetItem.file_sha256).where(
            DatasetItem.file_key.is_not(None)
        )
    )
    models = session.execute(select(OnnxModel.file_key, OnnxModel.file_size, OnnxModel.sha256))
    return [StoredFile(key, size, sha256) for key, size, sha256 in [*items, *models] if key]


def copy_files(
    files: list[StoredFile],
    source: Storage,
    target: Storage,
    progress: Callable[[int], None] = lambda size: None,
) -> CopyReport:
    """Copy the files, calling `progress` with each file's size as it is done."""
    report = CopyReport()
    for file in files:
        there = target.size(file.key)
        if there == file.size:
            report.skipped += 1
        else:
            if there is not None:  # a copy cut short before
                target.delete(file.key)
            _copy_one(file, source, target, report)
        progress(file.size)
    return report


def _copy_one(file: StoredFile, source: Storage, target: Storage, report: CopyReport) -> None:
    try:
        stream = source.open(file.key)
    except FileNotFoundError:
        report.missing.append(file.key)
        return
    try:
        with stream:
            staged = asyncio.run(target.stage(_chunks(stream), file.size, key=file.key))
    except PayloadTooLarge:  # larger than the row says: the stage kept nothing
        report.mismatched.append(file.key)
        return
    if staged.size != file.size or (file.sha256 and staged.sha256 != file.sha256):
        target.delete(file.key)
        report.mismatched.append(file.key)
    else:
        report.copied += 1


async def _chunks(stream: BinaryIO) -> AsyncIterator[bytes]:
    for chunk in _read(stream):
        yield chunk


def _read(stream: BinaryIO) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK_BYTES):
        yield chunk

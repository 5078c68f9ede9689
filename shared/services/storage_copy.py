"""Copy an installation's files to another storage (local disk to a bucket,
or back) before pointing STORAGE_URL at it. Every file a row points at is
copied under the same key and checked against the sha256 and size the row
recorded; a file already there whole is skipped, so an interrupted copy
resumes where it stopped. Nothing is deleted from the source."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.errors import PayloadTooLarge
from shared.models import DatasetItem, OnnxModel
from shared.storage import Storage, read_chunks
from shared.storage.local import LocalStorage

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
        if there == file.size and (not file.sha256 or _sha256(target, file.key) == file.sha256):
            report.skipped += 1
        else:
            if there is not None:  # a copy cut short before
                target.delete(file.key)
            _copy_one(file, source, target, report)
        progress(file.size)
    return report


def same_place(source: Storage, target: Storage) -> bool:
    """Whether both name the same files (a copy onto itself would delete
    the source's files it finds not matching their rows)."""
    if isinstance(source, LocalStorage) and isinstance(target, LocalStorage):
        if source.root.exists() and target.root.exists():
            return os.path.samefile(source.root, target.root)
        return source.root.resolve() == target.root.resolve()
    return source.location == target.location


def _sha256(storage: Storage, key: str) -> str:
    """The stored file's sha256, read back whole: a file already there is
    skipped only when it is the one the row records."""
    digest = hashlib.sha256()
    with storage.open(key) as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_one(file: StoredFile, source: Storage, target: Storage, report: CopyReport) -> None:
    try:
        stream = source.open(file.key)
    except FileNotFoundError:
        report.missing.append(file.key)
        return
    try:
        with stream:
            staged = asyncio.run(target.stage(read_chunks(stream), file.size, key=file.key))
    except PayloadTooLarge:  # larger than the row says: the stage kept nothing
        report.mismatched.append(file.key)
        return
    if staged.size != file.size or (file.sha256 and staged.sha256 != file.sha256):
        target.delete(file.key)
        report.mismatched.append(file.key)
    else:
        report.copied += 1

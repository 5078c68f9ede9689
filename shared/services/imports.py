"""An archive's entries made items of a version, each as an upload makes
one: its file staged in storage as it is read from the zip, then the
item, its file, splits, labels, annotations and the dataset's
post-processors' jobs in one transaction (whose messages are sent once
it commits). An entry refused at any step leaves nothing behind: not its
staged file, not a label or split only it would have made."""

from __future__ import annotations

import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from shared.db import session_scope
from shared.errors import AppError
from shared.exchange.imports import Archive, Entry
from shared.filekinds import FileKind
from shared.models import Annotation, DatasetSplit, DatasetVersion, Label
from shared.schemas import ItemCreate, SplitRef
from shared.services import files, items
from shared.services.scope import get_version
from shared.storage import StagedFile, read_chunks

CHUNK = 1024 * 1024
# A text file's content becomes the item's text too, up to this size.
TEXT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Refusal:
    entry: str
    reason: str


@dataclass
class Report:
    imported: int = 0
    refused: list[Refusal] = field(default_factory=list)


@dataclass
class Target:
    user_id: uuid.UUID
    dataset_id: uuid.UUID
    version_id: uuid.UUID
    # Names of splits and labels known to be in the version, by id: only
    # those whose transaction committed.
    splits: dict[str, uuid.UUID] = field(default_factory=dict)
    labels: dict[str, uuid.UUID] = field(default_factory=dict)
    # The labels the archive declares, made in their order with the first
    # entry that commits (none, if every entry is refused).
    declared: list[str] = field(default_factory=list)
    # The members entries took their file from: one file makes one item,
    # however many rows of a CSV or images of a COCO file name it.
    used: dict[str, str] = field(default_factory=dict)


# A member that cannot be read whole (a bad CRC, cut short), a value the
# database refuses (a NUL in a name), one the API's schema refuses.
_UNREADABLE = (zipfile.BadZipFile, EOFError, zlib.error)


async def import_entry(target: Target, archive: Archive, entry: Entry, report: Report) -> None:
    reason = entry.refused or _reused(target, entry)
    if reason:
        report.refused.append(Refusal(entry.where, reason))
        return
    member = entry.member
    try:
        if member is None or entry.text_only:
            text = entry.text
            if member is not None:
                if member.file_size > TEXT_BYTES:
                    raise AppError(f"a text of {member.file_size} bytes, over {TEXT_BYTES}")
                text = await anyio.to_thread.run_sync(_text_of, archive.zip, member)
            await anyio.to_thread.run_sync(_store_again_once, target, entry, text, None, None)
        else:

            def attach(staged: StagedFile, kind: FileKind) -> None:
                text = entry.text
                if kind.family == "text" and not text and staged.size <= TEXT_BYTES:
                    text = _text_of(archive.zip, member)
                _store_again_once(target, entry, text, staged, kind)

            # Read (and inflated) in a thread a chunk at a time; staging stops
            # past the limit, whatever size the member claims.
            with archive.zip.open(member) as stream:
                await files.attach_staged(read_chunks(stream, CHUNK), archive.limit, attach)
    except (AppError, ValidationError, DataError, IntegrityError, *_UNREADABLE) as error:
        report.refused.append(Refusal(entry.where, _reason(error)))
        return
    report.imported += 1
    if entry.member is not None:
        target.used[entry.member.filename] = entry.where


def _reused(target: Target, entry: Entry) -> str:
    if entry.member is None or entry.member.filename not in target.used:
        return ""
    first = target.used[entry.member.filename]
    return f"the file {entry.member.filename!r} is imported already, by {first}"


def _reason(error: BaseException) -> str:
    if isinstance(error, AppError):
        return error.detail
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
    if isinstance(error, DataError | IntegrityError):
        return "a value the database refuses (a NUL character, say)"
    return f"cannot be read from the zip ({error})"


def _text_of(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> str:
    return archive.read(member).decode("utf-8", "replace")


def _store_again_once(
    target: Target, entry: Entry, text: str, staged: StagedFile | None, kind: FileKind | None
) -> None:
    try:
        _store(target, entry, text, staged, kind)
    except IntegrityError:
        # A split or label known to this import was deleted meanwhile:
        # looked up again, once.
        target.splits.clear()
        target.labels.clear()
        _store(target, entry, text, staged, kind)


def _store(
    target: Target, entry: Entry, text: str, staged: StagedFile | None, kind: FileKind | None
) -> None:
    made_splits: dict[str, uuid.UUID] = {}
    made_labels: dict[str, uuid.UUID] = {}
    with session_scope() as session:
        _lock(session, target)
        for name in target.declared:
            _label(session, target, name, made_labels)
        splits = [SplitRef(id=_split(session, target, name, made_splits)) for name in entry.splits]
        # The splits given, even none: an imported item is where the
        # archive puts it, not in the version's default split.
        body = ItemCreate(name=entry.name, text=text, splits=splits)
        item = items.create_item(
            session, target.user_id, target.dataset_id, target.version_id, body
        )
        item_id = item.id
        for label, coordinates in entry.annotations:
            session.add(
                Annotation(
                    version_id=target.version_id,
                    item_id=item_id,
                    label_id=_label(session, target, label, made_labels),
                    split_id=None,
                    coordinates=coordinates,
                    user_id=target.user_id,
                )
            )
        session.flush()
        if staged is not None and kind is not None:
            assert entry.member is not None
            file_name = entry.member.filename.rsplit("/", 1)[-1]
            items.attach_file(
                session,
                target.user_id,
                target.dataset_id,
                target.version_id,
                item_id,
                staged=staged,
                kind=kind,
                file_name=file_name,
            )
    target.splits.update(made_splits)
    target.labels.update(made_labels)
    target.declared = []


def _lock(session: Session, target: Target) -> None:
    """The version locked, and checked as the caller's (from the row just
    read): imports into it one at a time make each split or label name
    once."""
    session.get(DatasetVersion, target.version_id, with_for_update=True)
    get_version(session, target.user_id, target.dataset_id, target.version_id)


def _split(session: Session, target: Target, name: str, made: dict[str, uuid.UUID]) -> uuid.UUID:
    found = target.splits.get(name) or made.get(name)
    if found is None:
        found = session.scalar(
            select(DatasetSplit.id).where(
                DatasetSplit.version_id == target.version_id, DatasetSplit.name == name
            )
        )
    if found is None:
        split = DatasetSplit(version_id=target.version_id, user_id=target.user_id, name=name)
        session.add(split)
        session.flush()
        found = split.id
    made[name] = found
    return found


def _label(session: Session, target: Target, name: str, made: dict[str, uuid.UUID]) -> uuid.UUID:
    found = target.labels.get(name) or made.get(name)
    if found is None:
        found = session.scalar(
            select(Label.id).where(Label.version_id == target.version_id, Label.name == name)
        )
    if found is None:
        last: Any = session.scalar(
            select(func.max(Label.index)).where(Label.version_id == target.version_id)
        )
        label = Label(
            version_id=target.version_id,
            user_id=target.user_id,
            name=name,
            index=0 if last is None else last + 1,
        )
        session.add(label)
        session.flush()
        found = label.id
    made[name] = found
    return found

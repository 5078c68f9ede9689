"""Stored files whose rows are gone: deleted once the transaction that
dropped the rows has committed, and never lost on the way. The removal is
recorded in that transaction (`file_removals`); after the commit the files
are deleted (a few at once, before the request answers; many, a dataset's,
from a thread) and a thread deletes the records. What fails there, or
never runs because the process died, the reaper finishes
(`remove_left_over`). No database transaction is open while a file is
deleted: a slow or unreachable object store holds no lock."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime
from typing import TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from shared import filekinds
from shared.db import after_commit, session_scope, upsert_insert
from shared.filekinds import FileKind
from shared.models import DatasetItem, FileRemoval, utcnow
from shared.storage import StagedFile, get_storage

T = TypeVar("T")

log = logging.getLogger(__name__)
# Keys per statement, far below any database's limit on bound parameters.
BATCH = 500
# Files deleted before the request (or task) that dropped their rows ends;
# more, and they go in a thread, not to hold up its answer.
AT_ONCE = 20


async def attach_staged(
    chunks: AsyncIterator[bytes], limit: int, attach: Callable[[StagedFile, FileKind], T]
) -> T:
    """An upload's bytes staged in storage, told apart by kind, and handed
    in a thread to `attach`, which makes them a row's file. Whatever fails
    on the way (the kind refused, `attach` raising, the request cancelled),
    the staged file is removed: no file is left that no row names."""
    staged = await get_storage().stage(chunks, limit)
    try:
        kind = filekinds.detect(staged.head)
        return await anyio.to_thread.run_sync(attach, staged, kind)
    except BaseException:
        # Shielded: a request cut off here must still not leave the file.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(remove_now_or_later, staged.key)
        raise


def delete_after_commit(session: Session, keys: Iterable[str]) -> None:
    """Delete stored files once the rows pointing at them are gone for good."""
    keys = sorted(set(keys))
    if not keys:
        return
    for start in range(0, len(keys), BATCH):
        record(session, keys[start : start + BATCH])
    after_commit(session, lambda: _after_commit(keys))


def record(session: Session, keys: Sequence[str]) -> None:
    """Record removals in the session's transaction; one already recorded
    (two transactions dropping rows of the same file) is kept as it is."""
    rows = [{"file_key": key, "requested_at": utcnow()} for key in keys]
    session.execute(upsert_insert(session)(FileRemoval).values(rows).on_conflict_do_nothing())


def remove_now_or_later(key: str) -> None:
    """Delete a stored file that no row points at (an upload refused after
    it was staged); if the storage refuses, record it for the reaper rather
    than hide the caller's own error behind this one."""
    try:
        get_storage().delete(key)
    except Exception as error:
        log.warning("event=file.removal_failed key=%s error=%r; the reaper retries", key, error)
        with session_scope() as session:
            record(session, [key])


def remove_left_over(requested_before: datetime) -> int:
    """Delete the files whose removal was asked for before `requested_before`
    and is not done: how many were deleted. Stops at the first that fails
    (the storage is likely down), sending it to the back of the line, so
    that one file that cannot be deleted never holds up the others."""
    with session_scope() as session:
        keys = session.scalars(
            select(FileRemoval.file_key)
            .where(FileRemoval.requested_at < requested_before)
            .order_by(FileRemoval.requested_at)
            .limit(BATCH)
        ).all()
    removed, failed = _delete_files(keys, stop_at_failure=True)
    with session_scope() as session:
        _forget(session, removed)
        if failed is not None:
            session.execute(
                update(FileRemoval)
                .where(FileRemoval.file_key == failed)
                .values(requested_at=utcnow())
            )
    return len(removed)


def _after_commit(keys: list[str]) -> None:
    if len(keys) <= AT_ONCE:
        removed, _failed = _delete_files(keys, stop_at_failure=False)
        if removed:
            # A connection of the thread's own: the committing session still
            # holds its own here.
            _in_background(_forget_removed, removed)
    else:
        _in_background(_remove, keys)


def _in_background(work: Callable[[list[str]], None], keys: list[str]) -> None:
    threading.Thread(target=work, args=(keys,), name="file-removal", daemon=True).start()


def _remove(keys: list[str]) -> None:
    removed, _failed = _delete_files(keys, stop_at_failure=False)
    _forget_removed(removed)


def _forget_removed(keys: list[str]) -> None:
    try:
        with session_scope() as session:
            _forget(session, keys)
    except Exception:
        # The files are gone; the reaper deletes them again (a no-op) and
        # the records with them.
        log.exception("event=file.removal_record_kept")


def _forget(session: Session, keys: Sequence[str]) -> None:
    for start in range(0, len(keys), BATCH):
        chunk = keys[start : start + BATCH]
        session.execute(delete(FileRemoval).where(FileRemoval.file_key.in_(chunk)))


def _delete_files(keys: Iterable[str], stop_at_failure: bool) -> tuple[list[str], str | None]:
    """Delete each file no item names any more: the keys of those that are
    gone now (or are another item's, and only their removal is forgotten),
    and the one that failed if `stop_at_failure` stopped there."""
    keys = list(keys)
    still_used = _still_used(keys)
    storage = get_storage()
    removed: list[str] = [key for key in keys if key in still_used]
    for key in keys:
        if key in still_used:
            continue
        try:
            storage.delete(key)
        except Exception as error:
            log.warning("event=file.removal_failed key=%s error=%r; the reaper retries", key, error)
            if stop_at_failure:
                return removed, key
        else:
            removed.append(key)
    return removed, None


def _still_used(keys: Sequence[str]) -> set[str]:
    """The keys an item still names: a version's copy shares its items'
    files (shared/services/version_copy.py), so an item's removal is only
    its file's when no other item has it. Read after the removing
    transaction committed; a copy being made holds its source items
    locked, so it has either committed by now or will not see them."""
    used: set[str] = set()
    with session_scope() as session:
        for start in range(0, len(keys), BATCH):
            chunk = keys[start : start + BATCH]
            used.update(
                session.scalars(
                    select(DatasetItem.file_key).where(DatasetItem.file_key.in_(chunk)).distinct()
                )
            )
    return used

"""Stored files whose rows are gone: deleted once the transaction that
dropped the rows has committed, and never lost on the way. The removal is
recorded in that transaction (`file_removals`); after the commit the file
is deleted and the record with it. What fails there, or never runs because
the process died, the reaper finishes (`remove_left_over`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from shared.db import after_commit, session_scope
from shared.models import FileRemoval
from shared.storage import get_storage

log = logging.getLogger(__name__)
BATCH = 500


def delete_after_commit(session: Session, keys: Iterable[str]) -> None:
    """Delete stored files once the rows pointing at them are gone for good."""
    keys = sorted(set(keys))
    if not keys:
        return
    session.add_all(FileRemoval(file_key=key) for key in keys)
    after_commit(session, lambda: _remove(keys))


def remove_left_over(session: Session, requested_before: datetime) -> int:
    """Delete the files whose removal was asked for before `requested_before`
    and is not done: how many were deleted."""
    keys = session.scalars(
        select(FileRemoval.file_key)
        .where(FileRemoval.requested_at < requested_before)
        .order_by(FileRemoval.requested_at)
        .limit(BATCH)
    ).all()
    removed = _delete_files(keys)
    if removed:
        session.execute(delete(FileRemoval).where(FileRemoval.file_key.in_(removed)))
    return len(removed)


def _remove(keys: list[str]) -> None:
    removed = _delete_files(keys)
    if removed:
        with session_scope() as session:
            session.execute(delete(FileRemoval).where(FileRemoval.file_key.in_(removed)))


def _delete_files(keys: Iterable[str]) -> list[str]:
    """Delete each file; the keys of those that are gone now."""
    storage = get_storage()
    removed = []
    for key in keys:
        try:
            storage.delete(key)
        except Exception as error:
            log.warning("event=file.removal_failed key=%s error=%r; the reaper retries", key, error)
        else:
            removed.append(key)
    return removed

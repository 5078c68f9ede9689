"""Stored files whose rows are gone are deleted after the commit, and a
removal that fails is finished by the reaper: no file is orphaned."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from shared.db import session_scope
from shared.models import FileRemoval, utcnow
from shared.services import files
from shared.services.reaper import sweep
from shared.storage import get_storage


def stored(content: bytes = b"some bytes") -> str:
    async def chunks():
        yield content

    return asyncio.run(get_storage().stage(chunks(), 1024)).key


def exists(key: str) -> bool:
    with get_storage().local_path(key) as path:
        return path.exists()


def removals(keys: list[str]) -> list[str]:
    with session_scope() as session:
        return list(
            session.scalars(select(FileRemoval.file_key).where(FileRemoval.file_key.in_(keys)))
        )


class Unreachable:
    """The storage, down for deletes (an object store that is unreachable)."""

    def delete(self, key: str) -> None:
        raise ConnectionError("the storage is unreachable")


def test_files_are_deleted_once_the_transaction_commits():
    keys = [stored(), stored()]
    with session_scope() as session:
        files.delete_after_commit(session, keys)
        assert all(exists(key) for key in keys)  # not before the commit

    assert not any(exists(key) for key in keys)
    assert removals(keys) == []


def test_a_transaction_rolled_back_deletes_nothing():
    key = stored()
    with pytest.raises(RuntimeError), session_scope() as session:
        files.delete_after_commit(session, [key])
        raise RuntimeError("the request failed")

    assert exists(key)
    assert removals([key]) == []


def test_a_removal_that_fails_is_finished_by_the_reaper(monkeypatch):
    key = stored()
    with monkeypatch.context() as storage_down:
        storage_down.setattr(files, "get_storage", Unreachable)
        with session_scope() as session:
            files.delete_after_commit(session, [key])
        assert exists(key) and removals([key]) == [key]

        # Within its minute, the removal is left to the process that asked.
        with session_scope() as session:
            assert sweep(session).files_removed == 0
        # Past it, the reaper tries, and keeps it while the storage is down.
        with session_scope() as session:
            assert sweep(session, now=utcnow() + timedelta(minutes=2)).files_removed == 0
        assert exists(key) and removals([key]) == [key]

    with session_scope() as session:
        swept = sweep(session, now=utcnow() + timedelta(minutes=2))

    assert swept.files_removed == 1
    assert not exists(key)
    assert removals([key]) == []

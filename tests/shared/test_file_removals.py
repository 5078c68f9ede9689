"""Stored files whose rows are gone are deleted after the commit, and a
removal that fails is finished by the reaper: no file is orphaned."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import delete, select

from shared.db import session_scope
from shared.models import FileRemoval, utcnow
from shared.services import files
from shared.storage import get_storage
from tests.fixtures import wait_until


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


class Storage:
    """The storage, counting deletes; while `down`, refusing them, as an
    unreachable object store does."""

    def __init__(self) -> None:
        self.real = get_storage()
        self.down = False
        self.deletes: list[str] = []

    def delete(self, key: str) -> None:
        self.deletes.append(key)
        if self.down:
            raise ConnectionError("the storage is unreachable")
        self.real.delete(key)


def forget_all_removals() -> None:
    with session_scope() as session:
        session.execute(delete(FileRemoval))


@pytest.fixture
def storage(monkeypatch) -> Iterator[Storage]:
    """The counting storage, with no removal of another test's pending
    (the reaper's part takes every removal that is due)."""
    counted = Storage()
    monkeypatch.setattr(files, "get_storage", lambda: counted)
    forget_all_removals()
    yield counted
    forget_all_removals()


def test_files_are_deleted_once_the_transaction_commits(storage):
    keys = [stored(), stored()]
    with session_scope() as session:
        files.delete_after_commit(session, keys)
        assert all(exists(key) for key in keys)  # not before the commit

    wait_until(lambda: removals(keys) == [], 10, "the removals done")
    assert not any(exists(key) for key in keys)
    assert sorted(storage.deletes) == sorted(keys)


def test_a_transaction_rolled_back_deletes_nothing(storage):
    key = stored()
    with pytest.raises(RuntimeError), session_scope() as session:
        files.delete_after_commit(session, [key])
        raise RuntimeError("the request failed")

    assert exists(key) and removals([key]) == [] and storage.deletes == []


def test_two_transactions_dropping_rows_of_one_file_record_it_once(storage):
    key = stored()
    storage.down = True
    for _ in range(2):
        with session_scope() as session:
            files.delete_after_commit(session, [key])
    wait_until(lambda: len(storage.deletes) == 2, 10, "both removals tried")

    assert removals([key]) == [key]


def test_a_removal_that_fails_is_finished_by_the_reaper(storage):
    key = stored()
    storage.down = True
    with session_scope() as session:
        files.delete_after_commit(session, [key])
    wait_until(lambda: storage.deletes == [key], 10, "the removal tried")
    assert exists(key) and removals([key]) == [key]

    # Within its minute, the removal is left to the process that asked.
    assert files.remove_left_over(utcnow() - timedelta(minutes=1)) == 0
    assert storage.deletes == [key]
    # Past it, the reaper tries, and keeps it while the storage is down.
    assert files.remove_left_over(utcnow() + timedelta(minutes=1)) == 0
    assert storage.deletes == [key, key] and removals([key]) == [key]

    storage.down = False
    assert files.remove_left_over(utcnow() + timedelta(minutes=1)) == 1

    assert not exists(key)
    assert removals([key]) == []


def test_a_file_that_cannot_be_deleted_does_not_hold_up_the_others(storage, monkeypatch):
    stuck, other = stored(), stored()
    storage.down = True
    for key in (stuck, other):
        with session_scope() as session:
            files.delete_after_commit(session, [key])
    wait_until(lambda: len(storage.deletes) == 2, 10, "both removals tried")
    real_delete = Storage.delete

    def refuses_one(self, key):
        if key == stuck:
            raise PermissionError("AccessDenied")
        self.down = False
        real_delete(self, key)

    monkeypatch.setattr(Storage, "delete", refuses_one)
    later = utcnow() + timedelta(minutes=1)

    # The stuck one is tried first, fails, and goes to the back of the line.
    assert files.remove_left_over(later) == 0
    assert files.remove_left_over(later + timedelta(minutes=1)) == 1

    assert not exists(other) and exists(stuck)
    assert removals([stuck, other]) == [stuck]


def test_many_files_are_deleted_from_a_thread_not_before_the_answer(storage):
    keys = [stored() for _ in range(files.AT_ONCE + 5)]
    with session_scope() as session:
        files.delete_after_commit(session, keys)

    wait_until(lambda: removals(keys) == [], 10, "the removals done")
    assert not any(exists(key) for key in keys)
    assert sorted(storage.deletes) == sorted(keys)

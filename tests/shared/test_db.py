"""Sessions: work registered to run after a commit runs only after one."""

from __future__ import annotations

import pytest

from shared.db import _session_factory, after_commit, session_scope


def test_actions_run_after_the_commit_and_never_after_a_rollback():
    ran: list[str] = []
    with session_scope() as session:
        after_commit(session, lambda: ran.append("committed"))
        assert ran == []
    assert ran == ["committed"]

    with pytest.raises(RuntimeError), session_scope() as session:
        after_commit(session, lambda: ran.append("rolled back"))
        raise RuntimeError("the work failed")
    assert ran == ["committed"]


def test_a_commit_outside_session_scope_runs_them_too():
    """No code path can commit and silently drop a send."""
    ran: list[str] = []
    with _session_factory()() as session:
        session.begin()
        after_commit(session, lambda: ran.append("first"))
        session.commit()
        assert ran == ["first"]
        session.begin()
        after_commit(session, lambda: ran.append("second"))
        session.rollback()
        session.begin()
        session.commit()
    assert ran == ["first"]


def test_a_failing_action_leaves_the_commit_and_the_other_actions_standing(caplog):
    ran: list[str] = []

    def fail() -> None:
        raise OSError("the broker is down")

    with session_scope() as session:
        after_commit(session, fail)
        after_commit(session, lambda: ran.append("next"))
    assert ran == ["next"]
    assert "after-commit action failed" in caplog.text


def test_on_sqlite_the_actions_run_once_the_next_transaction_may_begin():
    """A send after the commit must not hold SQLite's queue: another thread's
    transaction begins while it runs."""
    import threading

    from shared.db import get_engine

    if get_engine().dialect.name != "sqlite":
        pytest.skip("the machine's lock is SQLite's")
    began = threading.Event()

    def other_transaction() -> None:
        with session_scope():
            began.set()

    def send() -> None:
        other = threading.Thread(target=other_transaction)
        other.start()
        assert began.wait(5), "the next transaction waited for the send"
        other.join()

    with session_scope() as session:
        after_commit(session, send)
    assert began.is_set()

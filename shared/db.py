"""Engine and sessions. One session per request or task, closed by `with`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, make_url, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from shared.settings import get_settings
from shared.sqlite_lock import machine_lock

log = logging.getLogger(__name__)


# (statement, lock) timeouts in seconds for this process's connections, set
# by its entry point (`bound_waits`) before the engine is made.
_waits: tuple[float, float] | None = None


def bound_waits(statement_seconds: float, lock_seconds: float) -> None:
    """Bound every statement and every row-lock wait of this process's
    database connections (PostgreSQL; SQLite waits its busy_timeout). Call
    before the first query: the engine is made with them."""
    global _waits
    if _waits == (statement_seconds, lock_seconds):
        return  # the engine has them already, if it was made
    _waits = (statement_seconds, lock_seconds)
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    _session_factory.cache_clear()  # it holds the engine it was made with


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # The driver's own transaction handling is switched off so that every
        # transaction starts with BEGIN IMMEDIATE: it takes the write lock up
        # front, so two processes never deadlock upgrading a read lock.
        engine = create_engine(url, connect_args={"timeout": 30, "isolation_level": None})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    # A server or host that vanishes (a crash, a network cut) must not hold a
    # request or a job for the quarter of an hour TCP would wait: give up
    # connecting after 5 s, probe idle connections with keepalives and give
    # up on unacknowledged data after 30 s. (A server that is alive but
    # stuck still answers the probes: only the hard time limit ends a job
    # waiting on it.) What the URL sets itself is kept.
    defaults: dict[str, Any] = {
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "tcp_user_timeout": 30_000,
    }
    query = make_url(url).query
    if _waits is not None and "options" not in query:
        statement, lock = (round(seconds * 1000) for seconds in _waits)
        defaults["options"] = f"-c statement_timeout={statement} -c lock_timeout={lock}"
    return create_engine(
        url,
        # A connection the server dropped (a restart) is replaced, not used.
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        connect_args={name: value for name, value in defaults.items() if name not in query},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while a worker writes; foreign keys make the
    # cascades declared in the models real; busy_timeout waits out a writer
    # in another process instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().effective_database_url)


@lru_cache
def _session_factory() -> sessionmaker[Session]:
    factory = sessionmaker(get_engine(), expire_on_commit=False)
    # On the session's own events, so that whatever commits (session_scope,
    # or code that calls commit() itself) runs them, and a rollback drops them.
    event.listen(factory, "after_commit", _run_after_commit)
    event.listen(factory, "after_rollback", _drop_after_commit)
    return factory


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error.

    Work registered with `after_commit` runs once the commit has succeeded,
    so that a message is never sent for a row that was rolled back. On
    SQLite, transactions queue for the machine's lock (shared/sqlite_lock.py)
    until this one has ended; that work runs after the lock is free.
    """
    committed: list[Callable[[], None]] = []
    with _sqlite_turn(), _session_factory()() as session, session.begin():
        session.info[COMMITTED] = committed
        yield session
    _run(committed)


def _sqlite_turn() -> AbstractContextManager[None]:
    url = get_engine().url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return nullcontext()
    return machine_lock(url.database).held()


def after_commit(session: Session, action: Callable[[], None]) -> None:
    """Run `action` once the session's transaction has committed; never if
    it rolls back."""
    session.info.setdefault(AFTER_COMMIT, []).append(action)


AFTER_COMMIT = "after_commit"
COMMITTED = "committed"  # session_scope's list, run when it has ended


def _run_after_commit(session: Session) -> None:
    actions = session.info.pop(AFTER_COMMIT, [])
    later = session.info.get(COMMITTED)
    if later is not None:
        later.extend(actions)
    else:
        _run(actions)


def _run(actions: list[Callable[[], None]]) -> None:
    # The commit is done: the actions need no SQL (a send, a file deleted).
    for action in actions:
        try:
            action()
        except Exception:
            # The transaction stands; what failed here (a lost enqueue, a
            # file left behind) is logged and recovered later.
            log.exception("after-commit action failed")


def _drop_after_commit(session: Session) -> None:
    session.info.pop(AFTER_COMMIT, None)


def database_clock(session: Session) -> Any:
    """`database_now` for a statement that writes times: on PostgreSQL the
    server's `now()` in the statement itself (no round trip of its own), on
    SQLite this process's time once its transaction holds the lock."""
    if session.get_bind().dialect.name == "postgresql":
        return func.now()
    return database_now(session)


def database_now(session: Session) -> datetime:
    """The time by the database server's clock, for the leases that workers
    and the reaper on different machines compare: skew between their clocks
    must not take a live job from its worker. On PostgreSQL that is the
    start of the session's transaction. SQLite serves one machine, whose
    clock is this process's."""
    if session.get_bind().dialect.name == "postgresql":
        now: datetime = session.execute(select(func.now())).scalar_one()
        return now.astimezone(UTC)
    # Once this transaction holds SQLite's write lock, which it may have
    # waited for: a lease must not start out partly used up.
    session.execute(select(1))
    return datetime.now(UTC)


def upsert_insert(session: Session) -> Any:
    """The INSERT of the session's dialect that has ON CONFLICT: both
    PostgreSQL's and SQLite's speak it, in the same words."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql_insert
    return sqlite_insert

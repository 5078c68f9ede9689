"""One SQLite transaction at a time on this machine, in a queue.

SQLite lets one writer in at a time, and itemflow begins every transaction
with BEGIN IMMEDIATE (shared/db.py). A transaction that finds the write lock
taken waits in SQLite's busy handler, which sleeps and tries again, 1, 2, 5,
10 ms and longer: under a steady load the API's threads and the worker's
processes spent as much time asleep there as working, while the database
stood idle between them. Here they queue instead, and each is woken the
moment the one before it ends: the threads of a process on a lock, the
processes on an exclusive flock of a file beside the database.

Where flock does not exist (Windows), only the threads queue; SQLite's
busy handler still keeps processes apart.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]


class MachineLock:
    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._reset()

    def _reset(self) -> None:
        # Also in a forked child: the parent's lock state and its file's
        # description (which shares the parent's flock) are not the child's.
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None
        self._thread = threading.RLock()
        self._depth = 0

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._thread:
            self._depth += 1
            try:
                if self._depth == 1:
                    self._lock_file()
                try:
                    yield
                finally:
                    if self._depth == 1 and self._fd is not None and fcntl is not None:
                        fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                self._depth -= 1

    def _lock_file(self) -> None:
        if fcntl is None:
            return
        if self._fd is None:
            # Read-only does for flock: other users of the database (an API
            # and a worker under different accounts) can take it too.
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)


_locks: dict[str, MachineLock] = {}


def machine_lock(database_path: str) -> MachineLock:
    """The lock of the SQLite database at `database_path`, one per process."""
    lock = _locks.get(database_path)
    if lock is None:
        lock = _locks.setdefault(database_path, MachineLock(database_path + ".lock"))
    return lock


def _after_fork_in_child() -> None:
    for lock in _locks.values():
        lock._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)

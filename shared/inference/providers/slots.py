"""At most N calls in flight to one provider from one machine.

Each of a provider's N slots is a file under VAR_DIR; a call holds an
exclusive `flock` on one of them while it runs. The kernel drops a lock when
the process holding it dies, so a pool process killed mid-call (the OOM
killer, a hard time limit) never keeps its slot, as a counter or a
semaphore in shared memory would. Locks are per open file, so threads of
one process count apart too.
"""

from __future__ import annotations

import fcntl
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.inference import deadline

# How often a call waiting for a slot looks again: a provider call lasts
# seconds, so this costs the waiting call little.
POLL_SECONDS = 0.05


@contextmanager
def call_slot(folder: Path, provider: str, limit: int | None) -> Iterator[None]:
    """Hold one of the provider's `limit` slots for the body; wait for one
    to come free. No limit: no wait."""
    if limit is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        # From a random slot: waiting calls spread over them.
        start = random.randrange(limit)
        for index in (*range(start, limit), *range(start)):
            descriptor = os.open(folder / f"{provider}.{index}", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                continue
            except BaseException:
                os.close(descriptor)
                raise
            try:
                yield
            finally:
                os.close(descriptor)  # and the lock with it
            return
        # The wait ends with the attempt's time, but costs the job no
        # attempt: it made no call (see the job runner).
        left = deadline.time_left()
        if left is not None and left <= 0:
            raise deadline.NoSlotInTime(f"no call slot of {provider!r} came free in time")
        time.sleep(POLL_SECONDS)

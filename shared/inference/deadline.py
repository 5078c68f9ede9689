"""How long the running attempt has left before its soft time limit.

In a worker's pool of processes the soft limit is a signal that raises into
the model wherever it is. In a pool of threads (where the jobs that call an
external provider run) nothing can interrupt a thread that waits on a
socket, so a model that waits on the network bounds each wait by what is
left of the attempt, and ends it with `OutOfTime` when nothing is.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from shared.errors import AppError

# A context variable, not a global: each thread of a pool runs its own job.
_ends_at: ContextVar[float | None] = ContextVar("attempt_ends_at", default=None)


class OutOfTime(AppError):
    """The attempt ran into its soft time limit."""


class NoSlotInTime(OutOfTime):
    """The attempt's time ran out while it waited for one of a provider's
    call slots, before any call: the backlog's, not the job's."""


@contextmanager
def attempt_lasting(seconds: float) -> Iterator[None]:
    """The body is an attempt that must end within `seconds`."""
    token = _ends_at.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _ends_at.reset(token)


def time_left() -> float | None:
    """Seconds left of the running attempt; None outside one."""
    ends_at = _ends_at.get()
    return None if ends_at is None else ends_at - time.monotonic()


def check() -> None:
    """Raise OutOfTime when the running attempt has no time left."""
    left = time_left()
    if left is not None and left <= 0:
        raise OutOfTime("the soft time limit")


def bounded(timeout: float) -> tuple[float, bool]:
    """The timeout to wait with: `timeout`, or what is left of the attempt
    when that is shorter (then True, so that a wait that runs out says the
    attempt ran out of time, not that the other side was slow)."""
    check()
    left = time_left()
    if left is not None and left < timeout:
        return left, True
    return timeout, False

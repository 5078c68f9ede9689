"""Dropping the cancelled entries of the worker's timer.

A prefork worker's main process times each task's soft and hard limits with
an entry in its event loop's timer, and cancels the entry when the task
ends. kombu's timer only marks a cancelled entry: it stays in the heap until
the time it would have fired, the task's soft limit later (celery#1129,
celery#5200). At 100 jobs a second and a 10-minute limit that is 60,000
entries, about 0.5 KiB each, held for nothing: memory that grows with the
rate of jobs. Every `DROP_EVERY` seconds they are taken out.
"""

from __future__ import annotations

import heapq
from typing import Any

from celery import bootsteps
from kombu.asynchronous.timer import Timer

DROP_EVERY = 30.0


def drop_cancelled(timer: Timer) -> int:
    """Take the cancelled entries out of `timer`; how many there were."""
    queue = timer._queue
    kept = [event for event in queue if not event.entry.canceled]
    dropped = len(queue) - len(kept)
    if dropped:
        heapq.heapify(kept)
        # In place: the timer's iterator holds this list.
        queue[:] = kept
    return dropped


class DropCancelledTimers(bootsteps.StartStopStep):  # type: ignore[misc]  # celery is untyped
    """Runs where the worker has an event loop (prefork, solo); a pool of
    threads has neither the loop nor time-limit entries."""

    requires = {"celery.worker.components:Hub"}

    def start(self, worker: Any) -> None:
        if worker.hub is not None:
            worker.hub.call_repeatedly(DROP_EVERY, drop_cancelled, worker.hub.timer)

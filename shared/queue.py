"""Sending job messages to the workers, by task name, so that the API never
imports task code. Messages carry ids only; the worker reads the rest from
the database.

Each model type has a queue of its own (`itemflow.ocr`, `itemflow.stt`, ...),
so that an operator can run heavy models on machines of their own with
`itemflow worker --queues stt`; the jobs of models that call an external
provider (`llm`, `ner` with `model_id` llm) share `itemflow.external`, which
a worker's pool of threads serves.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass

# TASK_NAME is the broker's (its router knows it) and named here for senders.
from shared.broker import TASK_NAME as TASK_NAME
from shared.broker import celery_app, countdown_for, job_queue
from shared.settings import get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobMessage:
    job_id: str
    item_id: str
    # Not needed to run the job: carried so that Flower shows them.
    post_processor: str
    model_type: str
    model_id: str = ""  # with the type, chooses the queue
    dataset_id: str = ""


def send(message: JobMessage, countdown: float = 0) -> None:
    soft, hard = get_settings().time_limits_for(message.model_type)
    queue = job_queue(message.model_type, message.model_id)
    kwargs = asdict(message)
    celery_app().send_task(
        TASK_NAME,
        kwargs=kwargs,
        # What Flower shows as the arguments. Celery's own safe repr, made
        # for arguments of any size, took a third of a send's CPU; these
        # are a few short strings.
        kwargsrepr=repr(kwargs),
        queue=queue,
        countdown=countdown_for(queue, countdown),
        soft_time_limit=soft,
        time_limit=hard,
        ignore_result=True,
    )


def send_soon(message: JobMessage, countdown: float = 0) -> None:
    """Send the message; when the broker refuses it, keep trying from a
    thread of this process, so that the job does not wait for the reaper's
    sweep of quiet pending jobs (the last resort, should this process end)."""
    due = time.monotonic() + countdown
    try:
        send(message, countdown)
    except Exception:
        log.exception("event=job.send_failed job_id=%s; trying again", message.job_id)
        _resender().add(message, due)


class Resender:
    """Messages whose send failed, tried again after 0.5 s, then twice as
    long each time up to 30 s, until they go through. Each keeps its due
    time: a back-off still ends when it would have."""

    FIRST_WAIT = 0.5
    LONGEST_WAIT = 30.0
    # Past this many, the broker is down for long: the reaper's sweep will
    # send the rest, and this process keeps its memory.
    MOST_WAITING = 10_000

    def __init__(self) -> None:
        self._waiting: list[tuple[float, int, float, float, JobMessage]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, message: JobMessage, due: float, wait: float = FIRST_WAIT) -> None:
        with self._changed:
            if len(self._waiting) >= self.MOST_WAITING:
                log.error("event=job.send_dropped job_id=%s; the reaper sends it", message.job_id)
                return
            entry = (time.monotonic() + wait, next(self._order), wait, due, message)
            heapq.heappush(self._waiting, entry)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="resend", daemon=True)
                self._thread.start()
            self._changed.notify()

    def waiting(self) -> int:
        with self._changed:
            return len(self._waiting)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._waiting or self._waiting[0][0] > time.monotonic():
                    timeout = self._waiting[0][0] - time.monotonic() if self._waiting else None
                    self._changed.wait(timeout)
                _at, _order, wait, due, message = heapq.heappop(self._waiting)
            try:
                send(message, max(0.0, due - time.monotonic()))
            except Exception as error:
                log.warning("event=job.send_failed job_id=%s error=%r", message.job_id, error)
                self.add(message, due, min(wait * 2, self.LONGEST_WAIT))
            else:
                log.info("event=job.sent_again job_id=%s", message.job_id)


_resender_lock = threading.Lock()
_the_resender: Resender | None = None


def _forget_the_parents_resender() -> None:
    # A forked child (a Celery pool process) must not send the parent's
    # waiting messages again, nor wait on a lock the parent held.
    global _the_resender, _resender_lock
    _the_resender = None
    _resender_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_the_parents_resender)


def _resender() -> Resender:
    global _the_resender
    with _resender_lock:
        if _the_resender is None:
            _the_resender = Resender()
        return _the_resender

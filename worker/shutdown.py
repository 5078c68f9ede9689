"""A warm shutdown with a time limit, and the time limits of a run: how a
worker steers the jobs its processes run (the `RunControl` of
shared/services/execution.py).

On SIGTERM, Celery stops taking messages and waits for the running tasks,
however long they take. After `worker_shutdown_grace_seconds` the worker's
main process interrupts the jobs still running: their processes put them
back to pending and send them again, so another worker takes them at once
and nothing is left `processing`. (Celery's own soft shutdown sleeps out its
whole timeout even when the jobs finish sooner, and leaves the job to the
broker's redelivery and the lease's expiry.)

A worker whose pool is threads (the one for jobs that call external
providers) cannot interrupt a call in flight: after the grace period it
puts those jobs back without stopping their calls, and exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_shutting_down
from celery.worker import state

from shared.services.execution import Interrupted, OutOfTime, in_flight
from shared.settings import get_settings

log = logging.getLogger(__name__)

# Not used by Celery or billiard in a pool process.
INTERRUPT = signal.SIGUSR2


class WarmShutdown:
    """The main process's grace period, and in each pool process whether
    it has been told to stop and whether a model is running: the only time
    an interrupt may stop a job (not while its outcome is being written)."""

    def __init__(self) -> None:
        # Kept once set: a signal that came while the job was being claimed
        # still stops it before its model runs, and the process starts no
        # further job.
        self._stopping = False
        self._model_running = False

    # -- in a pool process -------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping

    def interrupt(self) -> None:
        """Stop the model this process is running, if any, and any job it
        would start; from the interrupt's signal handler."""
        self._stopping = True
        if self._model_running:
            raise Interrupted

    @contextlib.contextmanager
    def attempt(self) -> Iterator[None]:
        try:
            yield
        except SoftTimeLimitExceeded:
            raise OutOfTime("the soft time limit") from None

    @contextlib.contextmanager
    def model(self) -> Iterator[None]:
        self._model_running = True
        try:
            if self._stopping:
                raise Interrupted
            yield
        finally:
            self._model_running = False

    def listen_for_interrupts(self) -> None:
        """In a pool process, before each job. Not once at process start:
        billiard's pool installs its own handlers for every signal after
        the process initialisers have run, when its pool runs with threads
        (as on the filesystem broker). Only the prefork pool (what
        `itemflow worker` runs) can be interrupted: elsewhere a task does
        not run in the main thread of a process of its own."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(INTERRUPT) != self._on_interrupt:
            signal.signal(INTERRUPT, self._on_interrupt)

    def _on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        self.interrupt()

    # -- in the worker's main process -------------------------------------

    def start_grace_period(self, how: str = "", **_: object) -> None:
        """As a warm shutdown begins (Celery's `worker_shutting_down`)."""
        if how != "Warm":
            return  # a cold shutdown stops the jobs at once; the reaper takes them back
        grace = get_settings().worker_shutdown_grace_seconds
        # A daemon: the worker may well exit before the grace period is over.
        threading.Thread(target=self._interrupt_after, args=(grace,), daemon=True).start()

    def _interrupt_after(self, grace: float) -> None:
        time.sleep(grace)
        # Jobs this process would still start (in a pool of threads) go back
        # to the broker unclaimed (see the task).
        self._stopping = True
        interrupted: set[str] = set()
        # Not once but until the worker exits: on the filesystem broker a
        # worker in warm shutdown may still hand a job to a pool process
        # (which then gives it back unclaimed; see the task).
        while True:
            try:
                interrupt_running_jobs(grace, interrupted)
                if len(in_flight):
                    hand_back_and_exit(grace)
            except Exception:
                # The set of requests changed under us, or a pid was reused:
                # try again on the next round rather than stop enforcing.
                log.exception("interrupting running jobs failed")
            time.sleep(0.5)


def hand_back_and_exit(grace: float) -> None:
    """In a pool of threads, whose runs wait on a provider's answer and
    cannot be interrupted: put their jobs back for another worker (their
    attempts not counted), then end the process, which would otherwise
    wait for every call to return. A run's late outcome could not count."""
    handed = in_flight.hand_back()
    log.warning("event=worker.handed_back jobs=%s grace=%gs; exiting", handed, grace)
    logging.shutdown()
    os._exit(0)


def interrupt_running_jobs(grace: float, interrupted: set[str]) -> None:
    for request in tuple(state.active_requests):
        pid = request.worker_pid
        if not pid or pid == os.getpid() or request.id in interrupted:
            continue  # not started yet, run in this process (no pool), or done:
            # a pool process keeps the interrupt and stops its job as soon
            # as the model starts, however far the job had got.
        interrupted.add(request.id)
        log.warning(
            "event=job.interrupted grace=%gs job_id=%s pid=%s",
            grace,
            request.kwargs.get("job_id"),
            pid,
        )
        with contextlib.suppress(ProcessLookupError):  # finished meanwhile
            os.kill(pid, INTERRUPT)


# One per process: the main process's grace period, or a pool process's
# state (a forked pool process starts with a copy of the main's, not stopping).
shutdown = WarmShutdown()
worker_shutting_down.connect(shutdown.start_grace_period, weak=False)

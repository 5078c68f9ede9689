"""A job's message in the worker's main process, which sees its pool
processes die.

When the process running a job dies (SIGKILL, the kernel's OOM killer, a
crash in a model's native code) or is killed at its hard time limit, the
main process knows at once which run was lost: the process's pid and the
message give the claim's holder (`shared.services.jobs.run_holder`). It
counts that attempt and sends the job again after its back-off, or fails it
when none are left, then acknowledges the message: the job's own message is
the only next run, so the back-off holds. Without this, Celery gives the
message back (task_reject_on_worker_lost), its redelivery finds the job
still claimed and is dropped, and the job waits for its lease to run out.

Everything is guarded by the holder: a run that wrote its outcome before
dying, or never claimed the job, leaves nothing to take back, and Celery's
own handling (the message given back) goes on. The lease and the reaper
stay the net for a whole worker or machine that dies.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from billiard.einfo import ExceptionInfo, ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery.exceptions import Retry
from celery.worker.request import Request

from shared import metrics
from shared.services.execution import Outcome, RunOutcome, abandon_lost_run
from shared.services.jobs import run_holder

log = logging.getLogger("itemflow.worker")


class JobFailed(Exception):
    """The job failed for good: Flower shows the task as FAILURE with this."""


class JobRetrying(Exception):
    """The run failed and the job runs again after its back-off (its message
    is already sent): Flower shows the task as RETRY with this."""


class JobRequest(Request):  # type: ignore[misc]  # Celery ships no type hints
    def on_failure(
        self, exc_info: ExceptionInfo, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        # Billiard reports a pool process's exit mid-task as WorkerLostError,
        # or as the SystemExit it saw first.
        if isinstance(exc, WorkerLostError | SystemExit | KeyboardInterrupt):
            outcome = self._take_back(f"was lost: its process died ({_how(exc)})", "lost")
            if outcome is not None:
                exc_info = _as_exception_info(task_state_error(outcome))
        return super().on_failure(exc_info, send_failed_event, return_ok)

    def on_timeout(self, soft: bool, timeout: float) -> Any:
        if not soft:
            why = f"ran past its hard time limit of {timeout:g} s and was stopped"
            self._take_back(why, "time_limit", seconds=timeout)
        return super().on_timeout(soft, timeout)

    def _take_back(self, why: str, counted_as: str, seconds: float | None = None) -> Outcome | None:
        job_id = (self.kwargs or {}).get("job_id")
        if not job_id or self.worker_pid is None:
            return None  # never given to a process: nothing was claimed
        holder = run_holder(self.hostname, self.worker_pid, self.id, self._context.retries or 0)
        try:
            outcome = abandon_lost_run(uuid.UUID(job_id), holder, why)
        except Exception:
            # The database unreachable: the lease and the reaper take the
            # job back later. The main process must go on serving.
            log.exception("event=job.take_back_failed job_id=%s", job_id)
            return None
        if outcome is not None:
            metrics.job_ran(self.kwargs.get("model_type", ""), counted_as, seconds)
        return outcome


def task_state_error(outcome: Outcome) -> Exception:
    """What Flower shows for a run that failed: FAILURE with JobFailed for a
    job failed for good, RETRY with JobRetrying for one that runs again.
    The RETRY only tells Celery what happened: the job's own message for
    the next run is already sent (one back-off, not Celery's besides)."""
    attempt = f"attempt {outcome.attempt}"
    if outcome.status is RunOutcome.FAILED:
        return JobFailed(f"{attempt}: {outcome.error}")
    retry: Exception
    if outcome.status is RunOutcome.RETRYING:
        retry = Retry(f"{attempt} failed", exc=JobRetrying(f"{attempt}: {outcome.error}"))
    else:
        reason = f"{attempt} put back by a shutdown; it does not count"
        retry = Retry(reason, exc=JobRetrying(reason))
    return retry


def _how(exc: BaseException) -> str:
    """ "signal 9 (SIGKILL)" from billiard's "Worker exited prematurely:
    signal 9 (SIGKILL) Job: 0."."""
    if isinstance(exc, SystemExit):
        return f"exit code {exc.code}"
    text = str(exc).removeprefix("Worker exited prematurely: ").split(" Job:")[0].rstrip(".")
    return text or type(exc).__name__


def _as_exception_info(error: Exception) -> ExceptionInfo:
    try:
        raise error
    except Exception:
        return ExceptionInfo()

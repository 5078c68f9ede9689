"""Celery tasks: thin shells around the services."""

from __future__ import annotations

import logging
import os
import time
import uuid

from celery.exceptions import Reject, Retry, TimeLimitExceeded
from celery.signals import task_failure, worker_process_init

from shared import metrics
from shared.db import get_engine
from shared.inference.registry import get_registry
from shared.queue import TASK_NAME
from shared.services.execution import Outcome, RunOutcome, abandon_timed_out, run_job
from shared.services.retries import DATABASE_OUTAGE
from shared.settings import get_settings
from worker.app import celery_app
from worker.shutdown import shutdown


class JobFailed(Exception):
    """The job failed for good: Flower shows the task as FAILURE with this."""


class JobRetrying(Exception):
    """The run failed and the job runs again after its back-off (its message
    is already sent): Flower shows the task as RETRY with this."""


# The database unreachable (down, restarting): the message is sent again
# with back-off rather than used up (see shared/services/retries.py).
# Expected outcomes (`throws`) are logged as a line, not a traceback.
@celery_app.task(name=TASK_NAME, ignore_result=True, throws=(JobFailed,), **DATABASE_OUTAGE)
def run_post_processor(
    job_id: str,
    item_id: str = "",
    post_processor: str = "",
    model_type: str = "",
    model_id: str = "",
    dataset_id: str = "",
) -> str:
    """Run one post-processor job. Only `job_id` is needed to run it; the
    rest is in the message so that Flower shows it."""
    shutdown.listen_for_interrupts()
    if shutdown.stopping:
        # This process's worker is shutting down and has stopped its jobs:
        # the message goes back to the broker for another worker.
        raise Reject("the worker is shutting down", requeue=True)
    started = time.perf_counter()
    outcome = run_job(uuid.UUID(job_id), shutdown)
    ran = outcome.status is not RunOutcome.SKIPPED
    metrics.job_ran(
        model_type, outcome.status.value, time.perf_counter() - started if ran else None
    )
    return as_task_state(outcome)


def as_task_state(outcome: Outcome) -> str:
    """The task's state in Flower, as the job's: SUCCESS with "completed"
    or, for a duplicate message, "skipped"; FAILURE for a job failed for
    good; RETRY for a run that failed, or was put back, and runs again. The
    message is acknowledged in each case. A RETRY raised here only tells
    Celery what happened: the job's own message for the next run was sent
    already (one back-off, not Celery's besides)."""
    attempt = f"attempt {outcome.attempt}"
    if outcome.status is RunOutcome.FAILED:
        raise JobFailed(f"{attempt}: {outcome.error}")
    if outcome.status is RunOutcome.RETRYING:
        raise Retry(f"{attempt} failed", exc=JobRetrying(f"{attempt}: {outcome.error}"))
    if outcome.status is RunOutcome.PUT_BACK:
        reason = f"{attempt} put back by a shutdown; it does not count"
        raise Retry(reason, exc=JobRetrying(reason))
    if outcome.status is RunOutcome.SKIPPED:
        return "skipped: nothing to claim (a duplicate message, or the job is gone)"
    return f"completed ({attempt})"


@worker_process_init.connect
def prepare_process(**_: object) -> None:
    """In each worker process as it starts: drop database connections
    inherited through fork (two processes must never share one), and load
    the models now rather than in the first job (OCR takes seconds), and
    remove the job files that killed processes left in the temp dir."""
    get_engine().dispose(close=False)
    settings = get_settings()
    if settings.is_s3_storage:
        from shared.storage.s3 import remove_stale_downloads

        # This process may replace one killed mid-job, whose file is left.
        remove_stale_downloads(settings.longest_time_limit + 60)
    log = logging.getLogger(__name__)
    if settings.preload_models:
        try:
            get_registry().warm_up()
        except Exception:
            # A model that cannot load fails its jobs with the reason; the
            # process must still start and serve the other models.
            log.exception("loading the models failed")
    # Celery says the worker is ready before its processes have loaded
    # their models: this says when each has.
    log.info("event=worker.process_ready pid=%s", os.getpid())


@task_failure.connect(sender=run_post_processor)
def count_hard_time_limit(
    exception: BaseException | None = None, kwargs: dict[str, str] | None = None, **_: object
) -> None:
    """Runs in the worker's main process when it killed a job's process at
    the hard time limit; nothing else would ever record that attempt."""
    if isinstance(exception, TimeLimitExceeded) and kwargs and "job_id" in kwargs:
        seconds = float(exception.args[0]) if exception.args else 0.0
        abandon_timed_out(uuid.UUID(kwargs["job_id"]), seconds)
        metrics.job_ran(kwargs.get("model_type", ""), "time_limit", seconds)

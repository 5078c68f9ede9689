"""Celery tasks: thin shells around the services."""

from __future__ import annotations

import logging
import os
import time
import uuid

from celery import Task
from celery.exceptions import Reject
from celery.signals import worker_process_init

from shared import metrics
from shared.db import get_engine
from shared.inference.registry import get_registry
from shared.queue import TASK_NAME
from shared.services.execution import DatabaseFailed, Outcome, RunOutcome, run_job
from shared.services.jobs import run_holder
from shared.services.retries import DATABASE_OUTAGE
from shared.settings import get_settings
from worker.app import celery_app
from worker.requests import JobFailed, task_state_error
from worker.shutdown import shutdown


# Expected outcomes (`throws`) are logged as a line, not a traceback.
@celery_app.task(
    bind=True,
    name=TASK_NAME,
    ignore_result=True,
    throws=(JobFailed,),
    max_retries=DATABASE_OUTAGE.max_retries,
    Request="worker.requests:JobRequest",
)
def run_post_processor(
    self: Task,
    job_id: str,
    item_id: str = "",
    post_processor: str = "",
    model_type: str = "",
    model_id: str = "",
    dataset_id: str = "",
    resume: list[str] | None = None,
) -> str:
    """Run one post-processor job. Only `job_id` is needed to run it; the
    rest is in the message so that Flower shows it, but for `resume`, which
    only this task's own retry sends (see DatabaseFailed)."""
    shutdown.listen_for_interrupts()
    if shutdown.stopping:
        # This process's worker is shutting down and has stopped its jobs:
        # the message goes back to the broker for another worker.
        raise Reject("the worker is shutting down", requeue=True)
    started = time.perf_counter()
    holder = run_holder(
        self.request.hostname, os.getpid(), self.request.id, self.request.retries or 0
    )
    try:
        outcome = run_job(uuid.UUID(job_id), shutdown, holder, resume or ())
    except DatabaseFailed as failed:
        # The database unreachable: the message is sent again with back-off
        # rather than used up (shared/services/retries.py), naming the runs
        # whose claim it may take over.
        raise self.retry(
            exc=failed.__cause__,
            kwargs={**self.request.kwargs, "resume": failed.holders},
            countdown=DATABASE_OUTAGE.countdown(self.request.retries),
        ) from failed
    ran = outcome.status is not RunOutcome.SKIPPED
    metrics.job_ran(
        model_type, outcome.status.value, time.perf_counter() - started if ran else None
    )
    return as_task_state(outcome)


def as_task_state(outcome: Outcome) -> str:
    """The task's state in Flower, as the job's: SUCCESS with "completed"
    or, for a duplicate message, "skipped"; for a run that failed, FAILURE
    or RETRY (worker/requests.py). The message is acknowledged in each
    case."""
    if outcome.status is RunOutcome.SKIPPED:
        return "skipped: nothing to claim (a duplicate message, or the job is gone)"
    if outcome.status is not RunOutcome.COMPLETED:
        raise task_state_error(outcome)
    return f"completed (attempt {outcome.attempt})"


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

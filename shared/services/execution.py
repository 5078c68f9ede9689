"""Run one job: claim it, run its model outside any transaction, record the
outcome. Called by the worker's task; kept here so it can be tested without
Celery."""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select

from shared.db import session_scope
from shared.models import PostProcessorJob
from shared.postprocessors.base import ModelOutput, PermanentError, TransientError
from shared.postprocessors.registry import get_registry
from shared.services import jobs
from shared.storage import get_storage

log = logging.getLogger("itemflow.jobs")


@dataclass(frozen=True)
class Outcome:
    status: str  # completed, retrying, failed, skipped
    attempt: int = 0
    error: str = ""


def run_job(job_id: uuid.UUID) -> Outcome:
    with session_scope() as session:
        claimed = jobs.claim_job(session, job_id)
    if claimed is None:
        # Already taken, finished, or deleted with its item: a duplicate or
        # stale message, dropped without error.
        log.info("event=job.skipped job_id=%s", job_id)
        return Outcome("skipped")
    context = f"job_id={job_id} item_id={claimed.item.id} attempt={claimed.attempt}"
    log.info("event=job.started %s model_type=%s", context, claimed.config.model_type)
    started = time.monotonic()
    try:
        output = _run_model(claimed)
    except PermanentError as error:
        return _record_failure(claimed, context, str(error), transient=False)
    except TransientError as error:
        return _record_failure(
            claimed, context, str(error), transient=True, retry_after=error.retry_after
        )
    except SoftTimeLimitExceeded:
        return _record_failure(claimed, context, "The job ran out of time.", transient=True)
    except Exception as error:  # a model's unexpected error may pass: retry it
        log.exception("event=job.error %s", context)
        message = f"{type(error).__name__}: {error}"
        return _record_failure(claimed, context, message, transient=True)
    with session_scope() as session:
        recorded = jobs.complete_job(session, claimed, output)
    seconds = time.monotonic() - started
    if not recorded:
        return Outcome("skipped", claimed.attempt)
    log.info("event=job.completed %s seconds=%.2f", context, seconds)
    return Outcome("completed", claimed.attempt)


def abandon_timed_out(job_id: uuid.UUID, seconds: float) -> str | None:
    """The worker killed the process running this job at its hard time limit:
    count that attempt as a transient failure."""
    with session_scope() as session:
        attempt = session.scalar(
            select(PostProcessorJob.attempts).where(PostProcessorJob.id == job_id)
        )
        if attempt is None:
            return None
        return jobs.abandon_attempt(
            session,
            job_id,
            attempt,
            f"Attempt {attempt} ran past its hard time limit of {seconds:g} s and was stopped.",
            jobs.backoff_seconds(attempt),
        )


def _run_model(claimed: jobs.ClaimedJob) -> ModelOutput:
    model = get_registry().get(claimed.config.model_type, claimed.config.model_id)
    with ExitStack() as stack:
        file = None
        if claimed.file_key:
            file = stack.enter_context(get_storage().local_path(claimed.file_key))
            if not file.exists():
                raise PermanentError("The item's file is missing from storage.")
        return model.run(claimed.item, file, claimed.config)


def _record_failure(
    claimed: jobs.ClaimedJob,
    context: str,
    error: str,
    transient: bool,
    retry_after: float | None = None,
) -> Outcome:
    with session_scope() as session:
        backoff = jobs.fail_attempt(session, claimed, error, transient, retry_after)
    if backoff is not None:
        log.warning("event=job.retrying %s backoff=%.1f error=%r", context, backoff, error)
        return Outcome("retrying", claimed.attempt, error)
    log.warning("event=job.failed %s error=%r", context, error)
    return Outcome("failed", claimed.attempt, error)

"""The life of a post-processor job.

pending -> processing (claimed: attempts + 1) -> completed, or on error back
to pending after a back-off while attempts remain and the error is
transient, else failed. Every change of state is one guarded UPDATE, so a
message delivered twice, two retries clicked at once or a worker that lost
its claim can never make two runs count. A claim is a lease that the running
worker renews, and names the run that holds it: the worker's main process
takes back the claim of a process it saw die, and the reaper a job whose
lease ran out (a whole worker or machine gone).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import case, exists, select, update
from sqlalchemy.orm import Session, aliased

from shared import queue
from shared.db import after_commit, database_clock, database_now
from shared.errors import Conflict, NotFound
from shared.inference.base import ItemInput, ModelOutput, PostProcessorConfig
from shared.inference.registered_onnx import ModelSpec
from shared.models import (
    DatasetItem,
    JobStatus,
    Label,
    PostProcessor,
    PostProcessorJob,
    utcnow,
)
from shared.services import onnx_models, outputs, provider_keys
from shared.services.retries import RetryPolicy
from shared.services.scope import get_item
from shared.settings import get_settings

log = logging.getLogger(__name__)
Copy = TypeVar("Copy", ItemInput, PostProcessorConfig)


@dataclass(frozen=True)
class ClaimedJob:
    """What a worker needs to run a job, read in the claiming transaction."""

    job_id: uuid.UUID
    attempt: int
    max_attempts: int
    holder: str  # the claim's `claimed_by`
    item: ItemInput
    file_key: str | None
    config: PostProcessorConfig
    # The registered ONNX model the post-processor names, if it names one.
    registered_model: ModelSpec | None = None
    dataset_id: uuid.UUID | None = None  # for the messages sent again


def create_jobs_for_upload(session: Session, item: DatasetItem) -> list[PostProcessorJob]:
    """One pending job per enabled post-processor of the item's dataset, in
    `order`; each is enqueued when the transaction commits."""
    post_processors = session.scalars(
        select(PostProcessor)
        .where(PostProcessor.dataset_id == item.dataset_id, PostProcessor.enabled.is_(True))
        .order_by(PostProcessor.order, PostProcessor.created_at)
    ).all()
    return add_jobs(session, [(post_processor, item.id) for post_processor in post_processors])


def add_jobs(
    session: Session, wanted: Sequence[tuple[PostProcessor, uuid.UUID]]
) -> list[PostProcessorJob]:
    """A pending job of each post-processor for its item, each enqueued
    when the transaction commits."""
    max_attempts = get_settings().job_max_attempts
    created = [
        PostProcessorJob(
            post_processor_id=post_processor.id,
            dataset_item_id=item_id,
            dataset_id=post_processor.dataset_id,
            user_id=post_processor.user_id,
            max_attempts=max_attempts,
        )
        for post_processor, item_id in wanted
    ]
    session.add_all(created)
    session.flush()
    for job, (post_processor, _item_id) in zip(created, wanted, strict=True):
        enqueue_after_commit(session, job, post_processor)
    return created


def enqueue_after_commit(
    session: Session, job: PostProcessorJob, post_processor: PostProcessor, countdown: float = 0
) -> None:
    send_after_commit(
        session, job.id, job.dataset_item_id, job.dataset_id, post_processor, countdown
    )


def send_after_commit(
    session: Session,
    job_id: uuid.UUID,
    item_id: uuid.UUID,
    dataset_id: uuid.UUID | None,
    post_processor: PostProcessor | PostProcessorConfig,
    countdown: float,
) -> None:
    message = queue.JobMessage(
        job_id=str(job_id),
        item_id=str(item_id),
        dataset_id=str(dataset_id or ""),
        post_processor=post_processor.name,
        model_type=post_processor.model_type,
        model_id=post_processor.model_id,
    )
    after_commit(session, lambda: queue.send_soon(message, countdown))


# --- the worker's side ------------------------------------------------------


def run_holder(worker: str, pid: int, message_id: str, retries: int) -> str:
    """A run's name in `claimed_by`: the worker (Celery's node name), the
    pool process, the message and its retry (a retry keeps the message's
    id, and may land in the same process). The worker's main process knows
    all four for each message it gave a process."""
    return f"{worker}:{pid}:{message_id}:{retries}"


def claim_job(
    session: Session, job_id: uuid.UUID, holder: str = "", resume: Sequence[str] = ()
) -> ClaimedJob | None:
    """Take a pending job for the run `holder` (by default one unique to
    this call), leased to it for `job_lease_seconds`; None when there is
    nothing to take (the job is gone, done, or another run has it).

    `resume` names earlier runs of the same message that may hold the claim
    though they never learned it (the commit went through, its answer was
    lost with the connection), or that held it when the database failed
    their outcome: their claim is taken over without counting an attempt.
    Only the message's own retry names them, sent after those runs ended."""
    holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4()}"
    pending = PostProcessorJob.status == JobStatus.PENDING.value
    takeable = pending
    if resume:
        held_by_them = (PostProcessorJob.status == JobStatus.PROCESSING.value) & (
            PostProcessorJob.claimed_by.in_(resume)
        )
        takeable = pending | held_by_them
    # Computed by the database in the claim itself, where it can be.
    now = database_clock(session)
    claimed = session.execute(
        update(PostProcessorJob)
        .where(PostProcessorJob.id == job_id, takeable)
        .values(
            status=JobStatus.PROCESSING.value,
            # SET reads the row as it was: a pending job's claim is a new
            # attempt, a resumed one keeps its number.
            attempts=case(
                (pending, PostProcessorJob.attempts + 1), else_=PostProcessorJob.attempts
            ),
            claimed_by=holder,
            started_at=now,
            updated_at=now,
            lease_expires_at=_lease_from(now),
        )
        .execution_options(synchronize_session=False)
        .returning(
            PostProcessorJob.attempts,
            PostProcessorJob.max_attempts,
            PostProcessorJob.dataset_item_id,
            PostProcessorJob.post_processor_id,
        )
    ).one_or_none()
    if claimed is None:
        return None
    # Both rows in one query, not the job and then each relation lazily.
    item, post_processor = session.execute(
        select(DatasetItem, PostProcessor)
        .join(PostProcessor, PostProcessor.id == claimed.post_processor_id)
        .where(DatasetItem.id == claimed.dataset_item_id)
    ).one()
    label_names = session.scalars(
        select(Label.name).where(Label.version_id == item.version_id).order_by(Label.index)
    ).all()
    return ClaimedJob(
        job_id=job_id,
        attempt=claimed.attempts,
        max_attempts=claimed.max_attempts,
        holder=holder,
        item=_copy(
            ItemInput, item, media_type=item.file_media_type, label_names=tuple(label_names)
        ),
        file_key=item.file_key,
        config=_copy(
            PostProcessorConfig,
            post_processor,
            user_key=(
                provider_keys.sealed_key(
                    session, post_processor.user_id, post_processor.external_provider
                )
                if post_processor.external_provider
                else None
            ),
        ),
        registered_model=onnx_models.registered_spec(
            session, post_processor.model_type, post_processor.model_id
        ),
        dataset_id=item.dataset_id,
    )


def _copy(kind: type[Copy], row: Any, **given: Any) -> Copy:
    """A `kind` dataclass of the row's attributes of the same names, but for
    the `given` ones."""
    names = (field.name for field in fields(kind) if field.name not in given)
    return kind(**{name: getattr(row, name) for name in names}, **given)


def renew_lease(session: Session, job: ClaimedJob) -> bool:
    """Extend the lease of a job this run is still working on. False when
    the run no longer holds the job (it was taken back, or the job deleted):
    then nothing changes."""
    renewed = session.execute(
        update(PostProcessorJob)
        .where(_guard(job))
        # updated_at stays: it says when the job last changed state.
        .values(
            lease_expires_at=_lease_from(database_now(session)),
            updated_at=PostProcessorJob.updated_at,
        )
        .execution_options(synchronize_session=False)
        .returning(PostProcessorJob.id)
    ).one_or_none()
    return renewed is not None


def _lease_from(now: Any) -> Any:
    """The lease's end from `now`: a time, or the database's clock."""
    return now + timedelta(seconds=get_settings().job_lease_seconds)


def _guard(job: ClaimedJob) -> Any:
    """Only the run that made this claim may write its outcome."""
    return (
        (PostProcessorJob.id == job.job_id)
        & (PostProcessorJob.status == JobStatus.PROCESSING.value)
        & (PostProcessorJob.attempts == job.attempt)
        & (PostProcessorJob.claimed_by == job.holder)
    )


def _release(session: Session, *conditions: Any, **values: Any) -> bool:
    """End a run's hold on the job matching `conditions`: set `values` and
    clear its lease and holder. False when no job matched (the run no longer
    holds it). A job row this session loaded keeps the values it had: the
    guarded UPDATEs here are not evaluated against them in Python."""
    ended = session.execute(
        update(PostProcessorJob)
        .where(*conditions)
        .values(**values, updated_at=utcnow(), lease_expires_at=None, claimed_by=None)
        .execution_options(synchronize_session=False)
        .returning(PostProcessorJob.id)
    ).one_or_none()
    return ended is not None


def complete_job(session: Session, job: ClaimedJob, output: ModelOutput) -> bool:
    """Record a result and put it where the post-processor wants it. False
    when this run no longer holds the job; then nothing is written."""
    done = _release(
        session,
        _guard(job),
        status=JobStatus.COMPLETED.value,
        result=json.dumps(output.raw, ensure_ascii=False),
        error=None,
        completed_at=utcnow(),
    )
    if not done:
        log.warning("job %s attempt %s lost its claim; result discarded", job.job_id, job.attempt)
        return False
    outputs.apply(session, job.job_id, job.item.id, job.file_key, job.config, output)
    return True


def fail_attempt(
    session: Session,
    job: ClaimedJob,
    error: str,
    transient: bool,
    retry_after: float | None = None,
) -> float | None:
    """Record a failed run. Returns the back-off in seconds when the job goes
    back to pending for another attempt, None when it has failed for good
    (or this run no longer holds it)."""
    backoff = RetryPolicy.from_settings().next_try(
        job.attempt, job.max_attempts, transient=transient, retry_after=retry_after
    )
    retry = backoff is not None
    status = JobStatus.PENDING if retry else JobStatus.FAILED
    recorded = _release(
        session,
        _guard(job),
        status=status.value,
        error=error[:10_000],
        completed_at=None if retry else utcnow(),
    )
    if not recorded:
        log.warning("job %s attempt %s lost its claim; error discarded", job.job_id, job.attempt)
        return None
    if backoff is None:
        return None
    _send_again_after_commit(session, job, backoff)
    return backoff


def put_back(
    session: Session, job: ClaimedJob, still_running: bool = False, reason: str = ""
) -> bool:
    """Return a job whose run its worker stopped on shutdown to pending, and
    send it again. The stopped run does not count as an attempt: it was not
    the job's fault. False when this run no longer holds the job.

    Taking the attempt number back is safe when the run is over and writes
    nothing more: the next claim gets the same number, but another holder.
    A run `still_running` (a thread that cannot be stopped) keeps its
    number, and the job gets one more attempt instead, so that the attempts
    it shows are the runs that were made."""
    if still_running:
        counted = {"max_attempts": PostProcessorJob.max_attempts + 1}
        stopped = reason or "was still running when its worker shut down"
    else:
        counted = {"attempts": PostProcessorJob.attempts - 1}
        stopped = reason or "was stopped by a worker shutdown"
    released = _release(
        session,
        _guard(job),
        status=JobStatus.PENDING.value,
        error=f"Attempt {job.attempt} {stopped}; it was put back and does not count.",
        **counted,
    )
    if not released:
        return False
    _send_again_after_commit(session, job)
    return True


def _send_again_after_commit(session: Session, job: ClaimedJob, countdown: float = 0) -> None:
    """A claimed job's message, from what the claim read: no query."""
    send_after_commit(session, job.job_id, job.item.id, job.dataset_id, job.config, countdown)


def abandon_attempt(
    session: Session,
    job_id: uuid.UUID,
    attempt: int,
    error: str,
    lease_expired_at: datetime | None = None,
    holder: str | None = None,
) -> str | None:
    """End an attempt whose run will never report back (its process was
    killed, or it outlived its time limit) as a transient failure: back to
    pending and sent again after its back-off while attempts remain, else
    failed. Returns the new status, or None when that attempt no longer
    holds the job.

    With `lease_expired_at`, only while the lease has run out by then (or
    the job has none): a heartbeat that came in meanwhile keeps the job.
    With `holder`, only while that run holds the claim."""
    job = session.get(PostProcessorJob, job_id)
    if job is None:
        return None
    backoff = RetryPolicy.from_settings().next_try(attempt, job.max_attempts)
    retry = backoff is not None
    conditions = [
        PostProcessorJob.id == job_id,
        PostProcessorJob.status == JobStatus.PROCESSING.value,
        PostProcessorJob.attempts == attempt,
    ]
    if lease_expired_at is not None:
        conditions.append(
            PostProcessorJob.lease_expires_at.is_(None)
            | (PostProcessorJob.lease_expires_at < lease_expired_at)
        )
    if holder is not None:
        conditions.append(PostProcessorJob.claimed_by == holder)
    ended = _release(
        session,
        *conditions,
        status=(JobStatus.PENDING if retry else JobStatus.FAILED).value,
        error=error,
        completed_at=None if retry else utcnow(),
    )
    if not ended:
        return None
    log.warning(
        "event=job.attempt_abandoned job_id=%s item_id=%s attempt=%s retry=%s error=%r",
        job_id,
        job.dataset_item_id,
        attempt,
        retry,
        error,
    )
    if backoff is None:
        return JobStatus.FAILED.value
    enqueue_after_commit(session, job, job.post_processor, backoff)
    return JobStatus.PENDING.value


# --- the API's side ---------------------------------------------------------


LIVE = (JobStatus.PENDING.value, JobStatus.PROCESSING.value)


def beside_live() -> Any:
    """A job of the same post-processor and item, other than this one, is
    pending or running (one a backfill run or a new file made since): a
    retry then would run the post-processor twice over the item."""
    other = aliased(PostProcessorJob)
    return exists().where(
        other.post_processor_id == PostProcessorJob.post_processor_id,
        other.dataset_item_id == PostProcessorJob.dataset_item_id,
        other.id != PostProcessorJob.id,
        other.status.in_(LIVE),
    )


def back_to_pending(*conditions: Any, cap: Any) -> Any:
    """The UPDATE that retries the failed jobs `conditions` pick: pending
    again, error and completion cleared, `cap` attempts allowed. Guarded on
    the status, so of two retries at the same moment only one finds a job
    failed: that one alone enqueues it; and on no live job beside it (the
    caller holds the items locked, as a backfill run does, so that neither
    misses the other's)."""
    return (
        update(PostProcessorJob)
        .where(*conditions, PostProcessorJob.status == JobStatus.FAILED.value, ~beside_live())
        .values(
            status=JobStatus.PENDING.value,
            error=None,
            completed_at=None,
            max_attempts=cap,
            updated_at=utcnow(),
        )
    )


def retry_job(
    session: Session,
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    item_id: uuid.UUID,
    job_id: uuid.UUID,
    max_attempts: int | None,
) -> PostProcessorJob:
    get_item(session, user_id, dataset_id, version_id, item_id, for_update=True)
    job = session.get(PostProcessorJob, job_id)
    if job is None or job.dataset_item_id != item_id or job.user_id != user_id:
        raise NotFound("Job not found.")
    if job.status != JobStatus.FAILED.value:
        raise Conflict(f"Only a failed job can be retried; this one is {job.status}.")
    if session.scalar(select(beside_live()).where(PostProcessorJob.id == job_id)):
        raise Conflict(
            "Another job of this post-processor is pending or running for the item; "
            "retry this one once that one is done, if still needed."
        )
    cap = max_attempts if max_attempts is not None else job.max_attempts
    if job.attempts >= cap:
        raise Conflict(
            f"The job has used {job.attempts} of {job.max_attempts} attempts. "
            f'Send {{"max_attempts": N}} with N > {job.attempts} to allow more.',
            attempts=job.attempts,
            max_attempts=job.max_attempts,
        )
    retried = session.execute(
        back_to_pending(PostProcessorJob.id == job_id, cap=cap).returning(PostProcessorJob.id)
    ).one_or_none()
    if retried is None:
        raise Conflict("The job is being retried already.")
    session.refresh(job)
    enqueue_after_commit(session, job, job.post_processor)
    return job

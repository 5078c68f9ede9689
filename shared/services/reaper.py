"""Take back jobs that nobody will finish, and resend messages that were lost.

Two ways a job can be stranded: its worker died mid-run (the job stays
`processing`, and its lease is no longer renewed), or its message never
reached the broker (the broker was down at commit time, so the job stays
`pending`). A periodic sweep finds both; beside it, the reaper deletes the
stored files whose removal after a commit failed or never ran.
Every change is a guarded UPDATE and a resent message is harmless (the claim
takes a job once), so any number of reapers may run at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from shared.db import database_now
from shared.models import JobStatus, PostProcessor, PostProcessorJob, utcnow
from shared.services import files
from shared.services.jobs import abandon_attempt, enqueue_after_commit
from shared.settings import get_settings

log = logging.getLogger("itemflow.reaper")
BATCH = 500
REMOVAL_GRACE = timedelta(minutes=1)


@dataclass
class Swept:
    taken_back: int = 0
    failed: int = 0
    resent: int = 0


def sweep(session: Session, now: datetime | None = None) -> Swept:
    settings = get_settings()
    now = now or database_now(session)
    swept = Swept()
    # A running job's worker renews its lease; a lease that ran out means the
    # worker is gone. A job claimed before leases existed has none: a run
    # lasts at most the hard time limit, so past that (and a margin for the
    # result write) its worker is gone too.
    without_lease_before = now - timedelta(
        seconds=settings.longest_time_limit + settings.reaper_processing_margin_seconds
    )
    lost = _jobs(
        session,
        PostProcessorJob.status == JobStatus.PROCESSING.value,
        or_(
            PostProcessorJob.lease_expires_at < now,
            PostProcessorJob.lease_expires_at.is_(None)
            & (PostProcessorJob.started_at < without_lease_before),
        ),
    )
    for job, _post_processor in lost:
        # Guarded by the attempt and the lease read here: a worker that
        # finished, or renewed its lease late, in the meantime keeps its job.
        status = abandon_attempt(
            session,
            job.id,
            job.attempts,
            f"Attempt {job.attempts} was lost: its worker stopped before finishing.",
            lease_expired_at=now,
        )
        if status == JobStatus.PENDING.value:
            swept.taken_back += 1
        elif status == JobStatus.FAILED.value:
            swept.failed += 1

    # Back-offs are shorter than this, so a pending job this old has no
    # message on its way.
    quiet_before = now - timedelta(seconds=settings.reaper_pending_after_seconds)
    stuck = _jobs(
        session,
        PostProcessorJob.status == JobStatus.PENDING.value,
        PostProcessorJob.updated_at < quiet_before,
    )
    for job, post_processor in stuck:
        touched = session.execute(
            update(PostProcessorJob)
            .where(
                PostProcessorJob.id == job.id,
                PostProcessorJob.status == JobStatus.PENDING.value,
                PostProcessorJob.updated_at == job.updated_at,
            )
            .values(updated_at=now)
            .returning(PostProcessorJob.id)
        ).one_or_none()
        if touched is not None:
            log.warning("event=job.resent job_id=%s item_id=%s", job.id, job.dataset_item_id)
            swept.resent += 1
            enqueue_after_commit(session, job, post_processor)
    return swept


def remove_left_over_files() -> int:
    """Delete the files whose removal the committing process has had a
    minute to do itself; in transactions of their own, not the sweep's."""
    return files.remove_left_over(utcnow() - REMOVAL_GRACE)


def _jobs(session: Session, *conditions: Any) -> list[tuple[PostProcessorJob, PostProcessor]]:
    """Up to a batch of jobs, with their post-processor for the message."""
    rows = session.execute(
        select(PostProcessorJob, PostProcessor)
        .join(PostProcessor, PostProcessor.id == PostProcessorJob.post_processor_id)
        .where(*conditions)
        .limit(BATCH)
    )
    return [(job, post_processor) for job, post_processor in rows]

"""A dataset's jobs in bulk: retrying the failed ones a filter picks, and a
summary of where its jobs stand."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from shared.models import DatasetItem, JobStatus, PostProcessor, PostProcessorJob
from shared.services.jobs import back_to_pending, beside_live, send_after_commit
from shared.services.postprocessors import get_post_processor
from shared.services.scope import get_dataset

# The errors listed in a summary, most common first, each cut to this length
# (errors that differ only past it count as one).
TOP_ERRORS = 10
ERROR_HEAD = 300


@dataclass(frozen=True)
class RetryFilter:
    post_processor_id: uuid.UUID | None = None
    model_type: str | None = None
    error_contains: str | None = None
    created_before: datetime | None = None
    created_after: datetime | None = None
    # Raises the jobs' cap of attempts to this (a higher one stays).
    max_attempts: int | None = None


@dataclass(frozen=True)
class Retried:
    retried: int
    skipped: int  # failed jobs the filter matched that have no attempt left
    # Failed jobs left failed: another job of their post-processor is
    # pending or running for the item.
    busy: int = 0


def retry_failed(
    session: Session, user_id: uuid.UUID, dataset_id: uuid.UUID, chosen: RetryFilter
) -> Retried:
    """Set the dataset's failed jobs that `chosen` matches back to pending and
    enqueue each once, as a single retry does, except those whose attempts
    are used up (under `max_attempts` when given): those are skipped.

    One UPDATE guarded on `failed`: a job that another retry (bulk or single)
    took meanwhile no longer matches, so it is enqueued by that one alone,
    and a job that is not failed never runs again."""
    if chosen.post_processor_id is not None:
        # One of another dataset (or another user's) is not found, as one
        # that does not exist: not a filter that quietly matches nothing.
        get_post_processor(session, user_id, dataset_id, chosen.post_processor_id)
    else:
        get_dataset(session, user_id, dataset_id)
    matching = _matching(dataset_id, chosen)
    cap: Any = PostProcessorJob.max_attempts
    if chosen.max_attempts is not None:
        # Raised, never lowered: a job allowed more keeps its own cap.
        cap = case(
            (PostProcessorJob.max_attempts > chosen.max_attempts, PostProcessorJob.max_attempts),
            else_=chosen.max_attempts,
        )
    # The items locked first, in the order a backfill run takes them: a job
    # one makes for them meanwhile is seen below, and none is made beside
    # the jobs retried here.
    session.execute(
        select(DatasetItem.id)
        .where(
            DatasetItem.id.in_(
                select(PostProcessorJob.dataset_item_id).where(
                    *matching, PostProcessorJob.status == JobStatus.FAILED.value
                )
            )
        )
        .order_by(DatasetItem.created_at, DatasetItem.id)
        .with_for_update()
    )
    retried = session.execute(
        back_to_pending(*matching, PostProcessorJob.attempts < cap, cap=cap)
        .returning(
            PostProcessorJob.id,
            PostProcessorJob.dataset_item_id,
            PostProcessorJob.post_processor_id,
        )
        .execution_options(synchronize_session=False)
    ).all()
    # Of the matched jobs still failed: those without an attempt left, and
    # those left beside a live one, counted in one pass.
    skipped, busy = session.execute(
        select(
            func.count().filter(PostProcessorJob.attempts >= cap),
            func.count().filter(PostProcessorJob.attempts < cap, beside_live()),
        ).where(*matching, PostProcessorJob.status == JobStatus.FAILED.value)
    ).one()
    if retried:
        post_processors = {
            row.id: row
            for row in session.scalars(
                select(PostProcessor).where(PostProcessor.dataset_id == dataset_id)
            )
        }
        # From the returned rows: no query by their ids, however many.
        for job_id, item_id, post_processor_id in retried:
            send_after_commit(
                session, job_id, item_id, dataset_id, post_processors[post_processor_id], 0
            )
    return Retried(retried=len(retried), skipped=skipped or 0, busy=busy or 0)


def _matching(dataset_id: uuid.UUID, chosen: RetryFilter) -> list[Any]:
    """The filter's conditions (the status is back_to_pending's to guard)."""
    conditions: list[Any] = [PostProcessorJob.dataset_id == dataset_id]
    if chosen.post_processor_id is not None:
        conditions.append(PostProcessorJob.post_processor_id == chosen.post_processor_id)
    if chosen.model_type is not None:
        conditions.append(
            PostProcessorJob.post_processor_id.in_(
                select(PostProcessor.id).where(
                    PostProcessor.dataset_id == dataset_id,
                    PostProcessor.model_type == chosen.model_type,
                )
            )
        )
    if chosen.error_contains is not None:
        conditions.append(PostProcessorJob.error.icontains(chosen.error_contains, autoescape=True))
    if chosen.created_before is not None:
        conditions.append(PostProcessorJob.created_at < chosen.created_before)
    if chosen.created_after is not None:
        conditions.append(PostProcessorJob.created_at > chosen.created_after)
    return conditions


@dataclass(frozen=True)
class PostProcessorJobs:
    post_processor_id: uuid.UUID
    name: str
    model_type: str
    counts: dict[str, int]


@dataclass(frozen=True)
class CommonError:
    error: str
    count: int
    post_processor_id: uuid.UUID


@dataclass(frozen=True)
class Summary:
    post_processors: list[PostProcessorJobs]
    errors: list[CommonError]


def summary(session: Session, user_id: uuid.UUID, dataset_id: uuid.UUID) -> Summary:
    """The dataset's jobs counted by status for each of its post-processors
    (all of them, with zeros), and its failed jobs' most common errors."""
    get_dataset(session, user_id, dataset_id)
    counted: dict[uuid.UUID, dict[str, int]] = {}
    for post_processor_id, status, count in session.execute(
        select(PostProcessorJob.post_processor_id, PostProcessorJob.status, func.count())
        .where(PostProcessorJob.dataset_id == dataset_id)
        .group_by(PostProcessorJob.post_processor_id, PostProcessorJob.status)
    ):
        counted.setdefault(post_processor_id, {})[status] = count
    listed = []
    for row in session.scalars(
        select(PostProcessor)
        .where(PostProcessor.dataset_id == dataset_id)
        .order_by(PostProcessor.order, PostProcessor.created_at)
    ):
        found = counted.get(row.id, {})
        by_status = {status.value: found.get(status.value, 0) for status in JobStatus}
        listed.append(
            PostProcessorJobs(
                post_processor_id=row.id,
                name=row.name,
                model_type=row.model_type,
                counts={**by_status, "total": sum(by_status.values())},
            )
        )
    head = func.substr(PostProcessorJob.error, 1, ERROR_HEAD)
    errors = [
        CommonError(error=error, count=count, post_processor_id=post_processor_id)
        for error, post_processor_id, count in session.execute(
            select(head, PostProcessorJob.post_processor_id, func.count().label("n"))
            .where(
                PostProcessorJob.dataset_id == dataset_id,
                PostProcessorJob.status == JobStatus.FAILED.value,
                PostProcessorJob.error.is_not(None),
            )
            .group_by(head, PostProcessorJob.post_processor_id)
            .order_by(func.count().desc(), head)
            .limit(TOP_ERRORS)
        )
    ]
    return Summary(post_processors=listed, errors=errors)

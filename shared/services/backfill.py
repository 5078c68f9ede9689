"""Run a post-processor over the items a dataset already holds: adding
one to a dataset of 10,000 items should not need them uploaded again.

Items are taken a batch at a time, in the items' order, each batch in a
transaction of its own: its items locked (as an upload locks its item), a
job made for each that has none of this post-processor pending or
running, and the jobs' messages sent once it commits. So two runs at once,
or a run beside an upload, never leave two live jobs of one post-processor
on an item, and a run cut short keeps the batches it made; run again, it
goes on where the items still lack a job."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from shared.db import session_scope
from shared.errors import NotFound, ValidationFailed
from shared.models import (
    DatasetItem,
    DatasetSplit,
    JobStatus,
    PostProcessor,
    PostProcessorJob,
    item_splits,
)
from shared.services.jobs import LIVE, add_jobs
from shared.services.postprocessors import get_post_processor
from shared.services.scope import after_row, get_child, get_version

BATCH = 500
# The last item a batch looked at: its place in the items' order.
Cursor = tuple[datetime, uuid.UUID]
Which = Literal["all", "without_completed"]


@dataclass(frozen=True)
class Filter:
    version_id: uuid.UUID | None = None
    split_id: uuid.UUID | None = None
    # "without_completed": only items with no completed job of this
    # post-processor; "all": every item (a completed one runs once more).
    items: Which = "all"


@dataclass
class Run:
    created: int = 0
    # Items left alone: a job of this post-processor is pending or running
    # (or, picked as without a completed one, completed meanwhile).
    skipped: int = 0
    # Where the next call goes on ("" when the filter's items are all done),
    # and how many of the filter's items lie after it (a progress bar's end).
    next: str = ""
    remaining: int = 0


def run(
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    post_processor_id: uuid.UUID,
    chosen: Filter,
    limit: int | None = None,
    after: str = "",
) -> Run:
    """Jobs for the filter's items after `after` (the `next` of an earlier
    call), at most `limit` items looked at (None: all), batch by batch,
    each committed before the next."""
    with session_scope() as session:
        # Another's post-processor is not found before a bad `after` is
        # told: nothing of it is answered.
        _checked(session, user_id, dataset_id, post_processor_id, chosen)
    cursor = read_cursor(after)
    outcome = Run()
    seen = 0
    while limit is None or seen < limit:
        size = BATCH if limit is None else min(BATCH, limit - seen)
        with session_scope() as session:
            post_processor = _still_there(session, post_processor_id)
            cursor, looked_at, created, skipped = _batch(
                session, post_processor, chosen, cursor, size
            )
        seen += looked_at
        outcome.created += created
        outcome.skipped += skipped
        if looked_at < size:
            return outcome
    outcome.next = _write_cursor(cursor)
    with session_scope() as session:
        post_processor = _still_there(session, post_processor_id)
        outcome.remaining = _count_after(session, post_processor, chosen, cursor)
    return outcome


def _count_after(
    session: Session, post_processor: PostProcessor, chosen: Filter, cursor: Cursor | None
) -> int:
    query = (
        select(func.count()).select_from(DatasetItem).where(*_conditions(post_processor, chosen))
    )
    if cursor is not None:
        query = query.where(after_row(DatasetItem, cursor))
    return session.scalar(query) or 0


def _batch(
    session: Session,
    post_processor: PostProcessor,
    chosen: Filter,
    cursor: Cursor | None,
    size: int,
) -> tuple[Cursor | None, int, int, int]:
    query = (
        select(DatasetItem.id, DatasetItem.created_at)
        .where(*_conditions(post_processor, chosen))
        .order_by(DatasetItem.created_at, DatasetItem.id)
        .limit(size)
        .with_for_update(of=DatasetItem)
    )
    if cursor is not None:
        query = query.where(after_row(DatasetItem, cursor))
    rows = session.execute(query).all()
    if not rows:
        return cursor, 0, 0, 0
    ids = [row.id for row in rows]
    # Read under the items' locks, in one statement (one snapshot): a job
    # an upload made meanwhile has committed by now, and a job that went
    # from running to completed since the items were picked is seen as one
    # or the other, never as neither.
    busy = LIVE if chosen.items == "all" else (*LIVE, JobStatus.COMPLETED.value)
    live = set(
        session.scalars(
            select(PostProcessorJob.dataset_item_id).where(
                PostProcessorJob.post_processor_id == post_processor.id,
                PostProcessorJob.dataset_item_id.in_(ids),
                PostProcessorJob.status.in_(busy),
            )
        )
    )
    created = add_jobs(
        session, [(post_processor, item_id) for item_id in ids if item_id not in live]
    )
    last = rows[-1]
    return (last.created_at, last.id), len(rows), len(created), len(live)


def _still_there(session: Session, post_processor_id: uuid.UUID) -> PostProcessor:
    """The post-processor `_checked` found, unless deleted since (one query
    a batch, not the checks again)."""
    post_processor = session.get(PostProcessor, post_processor_id)
    if post_processor is None:
        raise NotFound("Post-processor not found.")
    return post_processor


def _checked(
    session: Session,
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    post_processor_id: uuid.UUID,
    chosen: Filter,
) -> PostProcessor:
    """The post-processor, and the filter's version and split, as the
    caller's: another's (or another dataset's) is not found."""
    post_processor = get_post_processor(session, user_id, dataset_id, post_processor_id)
    if chosen.version_id is not None:
        get_version(session, user_id, dataset_id, chosen.version_id)
    if chosen.split_id is not None:
        split = session.get(DatasetSplit, chosen.split_id)
        if split is None:
            raise NotFound("DatasetSplit not found.")
        # The split's version must be the filter's, and this dataset's.
        version_id = chosen.version_id or split.version_id
        get_version(session, user_id, dataset_id, version_id)
        get_child(session, DatasetSplit, user_id, version_id, chosen.split_id)
    return post_processor


def _conditions(post_processor: PostProcessor, chosen: Filter) -> list[Any]:
    conditions: list[Any] = [DatasetItem.dataset_id == post_processor.dataset_id]
    if chosen.version_id is not None:
        conditions.append(DatasetItem.version_id == chosen.version_id)
    if chosen.split_id is not None:
        conditions.append(
            exists().where(
                item_splits.c.item_id == DatasetItem.id, item_splits.c.split_id == chosen.split_id
            )
        )
    if chosen.items == "without_completed":
        conditions.append(
            ~exists().where(
                PostProcessorJob.dataset_item_id == DatasetItem.id,
                PostProcessorJob.post_processor_id == post_processor.id,
                PostProcessorJob.status == JobStatus.COMPLETED.value,
            )
        )
    return conditions


def read_cursor(after: str) -> Cursor | None:
    if not after:
        return None
    moment, _, item_id = after.partition("/")
    try:
        return datetime.fromisoformat(moment), uuid.UUID(item_id)
    except ValueError:
        raise ValidationFailed(
            [{"loc": ["body", "after"], "msg": "not a `next` this route answered"}]
        ) from None


def _write_cursor(cursor: Cursor | None) -> str:
    return "" if cursor is None else f"{cursor[0].isoformat()}/{cursor[1]}"

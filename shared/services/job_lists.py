"""Lists of jobs, with the names of their post-processor and item."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.models import DatasetItem, JobStatus, PostProcessor, PostProcessorJob
from shared.services.scope import Page, get_dataset, get_item


def list_item_jobs(
    session: Session,
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    item_id: uuid.UUID,
) -> list[tuple[PostProcessorJob, str, str]]:
    get_item(session, user_id, dataset_id, version_id, item_id)
    query = _with_details().where(PostProcessorJob.dataset_item_id == item_id)
    return [tuple(row) for row in session.execute(query)]


def list_dataset_jobs(
    session: Session,
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    page: Page,
    status: JobStatus | None = None,
    post_processor_id: uuid.UUID | None = None,
    item_id: uuid.UUID | None = None,
) -> tuple[list[tuple[PostProcessorJob, str, str]], int]:
    get_dataset(session, user_id, dataset_id)
    query = _with_details().where(PostProcessorJob.dataset_id == dataset_id)
    if status is not None:
        query = query.where(PostProcessorJob.status == status.value)
    if post_processor_id is not None:
        query = query.where(PostProcessorJob.post_processor_id == post_processor_id)
    if item_id is not None:
        query = query.where(PostProcessorJob.dataset_item_id == item_id)
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = session.execute(query.limit(page.size).offset(page.size * page.index))
    return [tuple(row) for row in rows], total or 0


def _with_details() -> Any:
    return (
        select(PostProcessorJob, PostProcessor.name, DatasetItem.name)
        .join(PostProcessor, PostProcessor.id == PostProcessorJob.post_processor_id)
        .join(DatasetItem, DatasetItem.id == PostProcessorJob.dataset_item_id)
        .order_by(PostProcessorJob.created_at, PostProcessor.order, PostProcessorJob.id)
    )

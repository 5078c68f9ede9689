"""Rows made directly in the database, for service tests, and the inputs
the models are given, for model tests."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from shared.db import session_scope
from shared.inference.base import ItemInput
from shared.models import (
    Dataset,
    DatasetItem,
    DatasetVersion,
    JobStatus,
    PostProcessor,
    PostProcessorJob,
    User,
)


def make_job(status=JobStatus.PENDING, attempts=0, model_id="test-reject"):
    with session_scope() as session:
        user = User(name=f"svc-{uuid.uuid4().hex[:8]}")
        session.add(user)
        session.flush()
        dataset = Dataset(user_id=user.id, name="d")
        session.add(dataset)
        session.flush()
        version = DatasetVersion(dataset_id=dataset.id, user_id=user.id, name="v1")
        session.add(version)
        session.flush()
        post_processor = PostProcessor(
            dataset_id=dataset.id,
            user_id=user.id,
            name="p",
            model_type="classification",
            model_id=model_id,
        )
        session.add(post_processor)
        session.flush()
        job, item = add_item_with_job(
            session, version, post_processor.id, status=status.value, attempts=attempts
        )
        return job, item, version


def add_item_with_job(
    session: Session,
    version: DatasetVersion,
    post_processor_id: uuid.UUID,
    name: str = "i",
    **job_fields: Any,
) -> tuple[PostProcessorJob, DatasetItem]:
    """A new item of `version` and a job of the post-processor for it, flushed."""
    item = DatasetItem(
        version_id=version.id, dataset_id=version.dataset_id, user_id=version.user_id, name=name
    )
    session.add(item)
    session.flush()
    job = PostProcessorJob(
        post_processor_id=post_processor_id,
        dataset_item_id=item.id,
        dataset_id=version.dataset_id,
        user_id=version.user_id,
        **job_fields,
    )
    session.add(job)
    session.flush()
    return job, item


def item_input(**fields: Any) -> ItemInput:
    """A model's input for an item: a new id, `fields`, and the rest empty."""
    empty: dict[str, Any] = {
        "id": uuid.uuid4(),
        "name": "",
        "description": "",
        "text": "",
        "extension": "",
        "media_type": "",
    }
    return ItemInput(**(empty | fields))

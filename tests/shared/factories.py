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
    """A job of a new user's post-processor, for a new item: (job, item, version)."""
    with session_scope() as session:
        version, post_processor = new_version(session, model_id=model_id)
        item = add_item(session, version)
        job = add_job(session, item, post_processor.id, status=status.value, attempts=attempts)
        return job, item, version


def new_version(
    session: Session, **post_processor_fields: Any
) -> tuple[DatasetVersion, PostProcessor]:
    """A new user's dataset, its version and a post-processor of the dataset
    (a classification by the rejecting test model unless the fields say
    otherwise), flushed."""
    user = User(name=f"svc-{uuid.uuid4().hex[:8]}")
    session.add(user)
    session.flush()
    dataset = Dataset(user_id=user.id, name="d")
    session.add(dataset)
    session.flush()
    version = DatasetVersion(dataset_id=dataset.id, user_id=user.id, name="v1")
    fields = {"name": "p", "model_type": "classification", "model_id": "test-reject"}
    post_processor = PostProcessor(
        dataset_id=dataset.id, user_id=user.id, **(fields | post_processor_fields)
    )
    session.add_all([version, post_processor])
    session.flush()
    return version, post_processor


def add_item(session: Session, version: DatasetVersion, name: str = "i") -> DatasetItem:
    """A new item of `version`, flushed."""
    item = DatasetItem(
        version_id=version.id, dataset_id=version.dataset_id, user_id=version.user_id, name=name
    )
    session.add(item)
    session.flush()
    return item


def add_job(
    session: Session, item: DatasetItem, post_processor_id: uuid.UUID, **fields: Any
) -> PostProcessorJob:
    """A job of the post-processor for `item`, flushed."""
    job = PostProcessorJob(
        post_processor_id=post_processor_id,
        dataset_item_id=item.id,
        dataset_id=item.dataset_id,
        user_id=item.user_id,
        **fields,
    )
    session.add(job)
    session.flush()
    return job


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

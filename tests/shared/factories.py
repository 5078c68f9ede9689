"""Rows made directly in the database, for service tests."""

from __future__ import annotations

import uuid

from shared.db import session_scope
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
        item = DatasetItem(version_id=version.id, dataset_id=dataset.id, user_id=user.id, name="i")
        post_processor = PostProcessor(
            dataset_id=dataset.id,
            user_id=user.id,
            name="p",
            model_type="classification",
            model_id=model_id,
        )
        session.add_all([item, post_processor])
        session.flush()
        job = PostProcessorJob(
            post_processor_id=post_processor.id,
            dataset_item_id=item.id,
            dataset_id=dataset.id,
            user_id=user.id,
            status=status.value,
            attempts=attempts,
        )
        session.add(job)
        session.flush()
        return job, item, version

"""The post-processors attached to a dataset."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.errors import NotFound
from shared.models import PostProcessor
from shared.schemas import PostProcessorCreate, PostProcessorUpdate
from shared.services.scope import apply_changes, get_dataset


def list_post_processors(
    session: Session, user_id: uuid.UUID, dataset_id: uuid.UUID
) -> list[PostProcessor]:
    get_dataset(session, user_id, dataset_id)
    return list(
        session.scalars(
            select(PostProcessor)
            .where(PostProcessor.dataset_id == dataset_id)
            .order_by(PostProcessor.order, PostProcessor.created_at)
        )
    )


def get_post_processor(
    session: Session, user_id: uuid.UUID, dataset_id: uuid.UUID, post_processor_id: uuid.UUID
) -> PostProcessor:
    get_dataset(session, user_id, dataset_id)
    post_processor = session.get(PostProcessor, post_processor_id)
    if post_processor is None or post_processor.dataset_id != dataset_id:
        raise NotFound("Post-processor not found.")
    return post_processor


def create_post_processor(
    session: Session, user_id: uuid.UUID, dataset_id: uuid.UUID, body: PostProcessorCreate
) -> PostProcessor:
    get_dataset(session, user_id, dataset_id)
    post_processor = PostProcessor(dataset_id=dataset_id, user_id=user_id, **body.model_dump())
    session.add(post_processor)
    session.flush()
    return post_processor


def update_post_processor(
    session: Session,
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    post_processor_id: uuid.UUID,
    body: PostProcessorUpdate,
) -> PostProcessor:
    post_processor = get_post_processor(session, user_id, dataset_id, post_processor_id)
    apply_changes(post_processor, body.changes())
    session.flush()
    return post_processor


def delete_post_processor(
    session: Session, user_id: uuid.UUID, dataset_id: uuid.UUID, post_processor_id: uuid.UUID
) -> PostProcessor:
    """Delete a post-processor with its jobs; queued messages for those jobs
    find nothing and are dropped."""
    post_processor = get_post_processor(session, user_id, dataset_id, post_processor_id)
    session.delete(post_processor)
    session.flush()
    return post_processor

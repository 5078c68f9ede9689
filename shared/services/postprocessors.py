"""The post-processors attached to a dataset."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.errors import NotFound, ValidationFailed
from shared.models import PostProcessor
from shared.postprocessors.providers.options import Refused, check
from shared.schemas import PostProcessorCreate, PostProcessorUpdate
from shared.services.scope import apply_changes, get_dataset
from shared.settings import get_settings

# The fields that say which provider a post-processor calls, and how.
PROVIDER_FIELDS = frozenset({"external_provider", "external_model", "external_config"})


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
    _refuse_what_the_operator_does_not_allow(post_processor)
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
    changes = body.changes()
    apply_changes(post_processor, changes)
    if PROVIDER_FIELDS & changes.keys():
        _refuse_what_the_operator_does_not_allow(post_processor)
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


def provider_problems(post_processor: PostProcessor) -> str:
    """Why the post-processor's provider settings are refused now (the
    operator's declarations may have changed since it was saved); "" when
    they are not, or it calls no provider."""
    try:
        _check(post_processor)
    except Refused as refused:
        return str(refused)
    return ""


def _refuse_what_the_operator_does_not_allow(post_processor: PostProcessor) -> None:
    try:
        _check(post_processor)
    except Refused as refused:
        errors = [
            {"loc": ["body", *problem.field.split(".", 1)], "msg": problem.message}
            for problem in refused.problems
        ]
        raise ValidationFailed(errors, detail=str(refused)) from None


def _check(post_processor: PostProcessor) -> None:
    if not post_processor.external_provider:
        return
    settings = get_settings()
    check(
        post_processor.external_provider,
        post_processor.external_model,
        post_processor.external_config,
        settings.provider_connections,
        settings.allowed_hosts,
    )

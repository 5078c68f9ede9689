"""The post-processors attached to a dataset."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.errors import NotFound, ValidationFailed
from shared.inference.base import PostProcessorModel
from shared.inference.providers.options import Refused, check
from shared.inference.registry import get_registry
from shared.models import PostProcessor
from shared.schemas import PostProcessorCreate, PostProcessorUpdate
from shared.services.onnx_models import registered_model_kinds
from shared.services.scope import apply_changes, get_dataset
from shared.settings import get_settings

# The fields that say which provider a post-processor calls, and how.
PROVIDER_FIELDS = frozenset({"external_provider", "external_model", "external_config"})


@dataclass(frozen=True)
class ModelDetails:
    """What serves a post-processor, as its answer names it."""

    model_name: str
    model_kind: str  # builtin, onnx, external, missing, or a plugin's own
    is_external: bool
    provider_name: str
    config_error: str  # see provider_problems


def model_details(session: Session, rows: list[PostProcessor]) -> list[ModelDetails]:
    """The model serving each post-processor, in the order given."""
    registry = get_registry()
    classes = {row.id: registry.model_class(row.model_type, row.model_id) for row in rows}
    # A model an operator registered is a row, not a class: the names of
    # those asked for come in one query, not one per post-processor.
    wanted = {row.model_id for row in rows if classes[row.id] is None and row.model_id}
    registered = registered_model_kinds(session, wanted)
    return [_details(row, classes[row.id], registered) for row in rows]


def _details(
    row: PostProcessor,
    model: type[PostProcessorModel] | None,
    registered: set[tuple[str, str]],
) -> ModelDetails:
    problems = provider_problems(row)
    if row.external_provider:
        return ModelDetails(row.external_model, "external", True, row.external_provider, problems)
    if model is not None:
        return ModelDetails(model.name, model.kind, False, "", problems)
    if (row.model_id, row.model_type) in registered:
        return ModelDetails(row.model_id, "onnx", False, "", problems)
    return ModelDetails("", "missing", False, "", problems)


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

"""Annotations a person makes through the API."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.errors import ValidationFailed
from shared.models import Annotation, DatasetItem, DatasetSplit, Label
from shared.schemas import AnnotationCreate, AnnotationUpdate
from shared.services.scope import apply_changes, get_child, get_version


def create_annotation(
    session: Session,
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    body: AnnotationCreate,
) -> Annotation:
    get_version(session, user_id, dataset_id, version_id)
    values = body.model_dump()
    _check_refs(session, version_id, values)
    annotation = Annotation(version_id=version_id, user_id=user_id, **values)
    session.add(annotation)
    session.flush()
    return annotation


def update_annotation(
    session: Session,
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    annotation_id: uuid.UUID,
    body: AnnotationUpdate,
) -> Annotation:
    get_version(session, user_id, dataset_id, version_id)
    annotation = get_child(session, Annotation, user_id, version_id, annotation_id)
    changes = body.changes()
    _check_refs(session, version_id, changes)
    apply_changes(annotation, changes)
    session.flush()
    return annotation


def delete_annotation(
    session: Session,
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    annotation_id: uuid.UUID,
) -> Annotation:
    get_version(session, user_id, dataset_id, version_id)
    annotation = get_child(session, Annotation, user_id, version_id, annotation_id)
    session.delete(annotation)
    session.flush()
    return annotation


def _check_refs(session: Session, version_id: uuid.UUID, values: dict[str, object]) -> None:
    """Label, item and split must all belong to the annotation's version."""
    if values.get("split_id") == "":
        values["split_id"] = None
    errors = []
    refs: list[tuple[str, type[Label] | type[DatasetItem] | type[DatasetSplit]]] = [
        ("label_id", Label),
        ("item_id", DatasetItem),
        ("split_id", DatasetSplit),
    ]
    for field, model in refs:
        row_id = values.get(field)
        if row_id is None:
            continue
        row_version = session.scalar(select(model.version_id).where(model.id == row_id))
        if row_version != version_id:
            errors.append({"loc": ["body", field], "msg": "not found in this version"})
    if errors:
        raise ValidationFailed(errors)

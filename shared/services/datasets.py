"""Datasets, their versions, and the splits and labels of a version."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from shared.errors import ValidationFailed
from shared.models import Dataset, DatasetItem, DatasetSplit, DatasetVersion, Label
from shared.schemas import DatasetCreate, RequestBody, VersionCreate
from shared.services import files
from shared.services.scope import (
    Page,
    apply_changes,
    get_child,
    get_dataset,
    get_version,
    paged,
    reloaded,
)

Row = TypeVar("Row", DatasetSplit, Label)

DEFAULT_SPLITS = ("train", "valid", "test")
_VERSION_LOAD = (selectinload(DatasetVersion.labels), selectinload(DatasetVersion.splits))


def list_datasets(session: Session, user_id: uuid.UUID, page: Page) -> tuple[list[Dataset], int]:
    query = (
        select(Dataset)
        .where(Dataset.user_id == user_id)
        .order_by(Dataset.created_at, Dataset.id)
        .options(selectinload(Dataset.versions).options(*_VERSION_LOAD))
    )
    return paged(session, query, page)


def create_dataset(session: Session, user_id: uuid.UUID, body: DatasetCreate) -> Dataset:
    dataset = Dataset(user_id=user_id, **body.model_dump())
    session.add(dataset)
    session.flush()
    version = DatasetVersion(dataset_id=dataset.id, user_id=user_id, name="v1")
    session.add(version)
    session.flush()
    if body.default_splits:
        splits = [
            DatasetSplit(version_id=version.id, user_id=user_id, name=n) for n in DEFAULT_SPLITS
        ]
        session.add_all(splits)
        session.flush()
        version.default_split = str(splits[0].id)
    session.flush()
    return load_dataset(session, user_id, dataset.id)


def load_dataset(session: Session, user_id: uuid.UUID, dataset_id: uuid.UUID) -> Dataset:
    get_dataset(session, user_id, dataset_id)
    return reloaded(
        session, Dataset, dataset_id, selectinload(Dataset.versions).options(*_VERSION_LOAD)
    )


def update_dataset(
    session: Session, user_id: uuid.UUID, dataset_id: uuid.UUID, body: RequestBody
) -> Dataset:
    dataset = get_dataset(session, user_id, dataset_id)
    apply_changes(dataset, body.changes())
    session.flush()
    return load_dataset(session, user_id, dataset_id)


def delete_dataset(session: Session, user_id: uuid.UUID, dataset_id: uuid.UUID) -> Dataset:
    dataset = load_dataset(session, user_id, dataset_id)
    _forget_files(session, DatasetItem.dataset_id == dataset_id)
    session.delete(dataset)
    session.flush()
    return dataset


# --- versions ---------------------------------------------------------------


def list_versions(
    session: Session, user_id: uuid.UUID, dataset_id: uuid.UUID, page: Page
) -> tuple[list[DatasetVersion], int]:
    get_dataset(session, user_id, dataset_id)
    query = (
        select(DatasetVersion)
        .where(DatasetVersion.dataset_id == dataset_id)
        .order_by(DatasetVersion.created_at, DatasetVersion.id)
        .options(*_VERSION_LOAD)
    )
    return paged(session, query, page)


def create_version(
    session: Session, user_id: uuid.UUID, dataset_id: uuid.UUID, body: VersionCreate
) -> DatasetVersion:
    get_dataset(session, user_id, dataset_id)
    if body.default_split:
        raise ValidationFailed(
            [{"loc": ["body", "default_split"], "msg": "a new version has no splits yet"}]
        )
    version = DatasetVersion(dataset_id=dataset_id, user_id=user_id, **body.model_dump())
    session.add(version)
    session.flush()
    return load_version(session, user_id, dataset_id, version.id)


def load_version(
    session: Session, user_id: uuid.UUID, dataset_id: uuid.UUID, version_id: uuid.UUID
) -> DatasetVersion:
    get_version(session, user_id, dataset_id, version_id)
    return reloaded(session, DatasetVersion, version_id, *_VERSION_LOAD)


def update_version(
    session: Session,
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    body: RequestBody,
) -> DatasetVersion:
    version = get_version(session, user_id, dataset_id, version_id)
    changes = body.changes()
    if changes.get("default_split"):
        changes["default_split"] = _check_split_of_version(
            session, version_id, changes["default_split"]
        )
    apply_changes(version, changes)
    session.flush()
    return load_version(session, user_id, dataset_id, version_id)


def delete_version(
    session: Session, user_id: uuid.UUID, dataset_id: uuid.UUID, version_id: uuid.UUID
) -> DatasetVersion:
    version = load_version(session, user_id, dataset_id, version_id)
    _forget_files(session, DatasetItem.version_id == version_id)
    session.delete(version)
    session.flush()
    return version


def _check_split_of_version(session: Session, version_id: uuid.UUID, split_id: str) -> str:
    """The split id in its canonical form, if it names a split of the version."""
    try:
        split = session.get(DatasetSplit, uuid.UUID(split_id))
    except ValueError:
        split = None
    if split is None or split.version_id != version_id:
        raise ValidationFailed(
            [{"loc": ["body", "default_split"], "msg": "not a split of this version"}]
        )
    return str(split.id)


# --- splits and labels ------------------------------------------------------


def list_children(
    session: Session,
    model: type[Row],
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    page: Page,
) -> tuple[list[Row], int]:
    get_version(session, user_id, dataset_id, version_id)
    query = select(model).where(model.version_id == version_id).order_by(model.created_at, model.id)
    return paged(session, query, page)


def get_version_child(
    session: Session,
    model: type[Row],
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    row_id: uuid.UUID,
) -> Row:
    get_version(session, user_id, dataset_id, version_id)
    return get_child(session, model, user_id, version_id, row_id)


def create_child(
    session: Session,
    model: type[Row],
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    body: RequestBody,
) -> Row:
    get_version(session, user_id, dataset_id, version_id)
    row = model(version_id=version_id, user_id=user_id, **body.model_dump())
    session.add(row)
    session.flush()
    return row


def update_child(
    session: Session,
    model: type[Row],
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    row_id: uuid.UUID,
    body: RequestBody,
) -> Row:
    row = get_version_child(session, model, user_id, dataset_id, version_id, row_id)
    apply_changes(row, body.changes())
    session.flush()
    return row


def delete_child(
    session: Session,
    model: type[Row],
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    row_id: uuid.UUID,
) -> Row:
    row = get_version_child(session, model, user_id, dataset_id, version_id, row_id)
    if model is DatasetSplit:
        version = session.get(DatasetVersion, version_id)
        if version is not None and version.default_split == str(row_id):
            version.default_split = ""
    session.delete(row)
    session.flush()
    return row


def _forget_files(session: Session, condition: Any) -> None:
    # Locked: an upload committing meanwhile would leave its new file out.
    keys = session.scalars(select(DatasetItem.file_key).where(condition).with_for_update()).all()
    files.delete_after_commit(session, [key for key in keys if key])

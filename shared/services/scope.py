"""Look rows up on behalf of a user. A row of another user is "not found"."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.orm import Session

from shared.errors import NotFound
from shared.models import Dataset, DatasetItem, DatasetVersion

Row = TypeVar("Row")


@dataclass(frozen=True)
class Page:
    size: int = 100
    index: int = 0


def paged(session: Session, query: Select[Row], page: Page) -> tuple[list[Row], int]:
    """One page of a query's rows, and how many rows the query has in all."""
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = session.scalars(query.limit(page.size).offset(page.size * page.index)).all()
    return list(rows), total or 0


def apply_changes(row: Any, changes: dict[str, Any]) -> None:
    """Set the fields a partial update sent."""
    for name, value in changes.items():
        setattr(row, name, value)


def reloaded(session: Session, model: type[Row], row_id: uuid.UUID, *load: Any) -> Row:
    """The row read afresh, with its relations as `load` says (in one go):
    what this session changed shows, and nothing is loaded row by row."""
    session.expire_all()
    key = model.id  # type: ignore[attr-defined]  # every table's primary key
    return session.scalars(select(model).where(key == row_id).options(*load)).one()


def after_row(model: Any, last: tuple[Any, Any]) -> Any:
    """Rows after `last` (a row's `created_at` and `id`) in the order
    (created_at, id): a keyset page's condition, which the index on that
    order serves however deep the page."""
    return tuple_(model.created_at, model.id) > tuple_(*last)


def get_dataset(session: Session, user_id: uuid.UUID, dataset_id: uuid.UUID) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.user_id != user_id:
        raise NotFound("Dataset not found.")
    return dataset


def get_version(
    session: Session, user_id: uuid.UUID, dataset_id: uuid.UUID, version_id: uuid.UUID
) -> DatasetVersion:
    version = session.get(DatasetVersion, version_id)
    if version is None or version.user_id != user_id or version.dataset_id != dataset_id:
        raise NotFound("Dataset version not found.")
    return version


def get_item(
    session: Session,
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    item_id: uuid.UUID,
    for_update: bool = False,
) -> DatasetItem:
    item = session.get(DatasetItem, item_id, with_for_update=for_update)
    if (
        item is None
        or item.user_id != user_id
        or item.dataset_id != dataset_id
        or item.version_id != version_id
    ):
        raise NotFound("Item not found.")
    return item


def get_child(
    session: Session, model: type[Row], user_id: uuid.UUID, version_id: uuid.UUID, row_id: uuid.UUID
) -> Row:
    """A split, label or annotation of a version."""
    row = session.get(model, row_id)
    if (
        row is None
        or getattr(row, "user_id") != user_id  # noqa: B009 - generic over models
        or getattr(row, "version_id") != version_id  # noqa: B009
    ):
        raise NotFound(f"{model.__name__} not found.")
    return row

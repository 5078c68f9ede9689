"""A version's frozen copy: a new version of the same dataset holding, as
they are now, its splits, labels, items (their text and files), the items'
split memberships, annotations and states. Nothing links the two after:
each is changed on its own. The files are not copied: both versions' items
name the same stored file, which is deleted only once no item names it
(shared/services/files.py checks before deleting).

Rows go in batches of plain INSERTs, in the order their foreign keys need,
all in the request's transaction: a copy is whole or not at all."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.orm import Session

from shared.models import (
    Annotation,
    DatasetItem,
    DatasetSplit,
    DatasetVersion,
    ItemState,
    Label,
    item_splits,
    utcnow,
)
from shared.services.datasets import load_version
from shared.services.scope import after_row, get_version
from shared.services.states import state_id

BATCH = 1000
# Columns that are the row's own and not copied as they are.
_OWN = {"id", "created_at", "updated_at"}


def duplicate_version(
    session: Session, user_id: uuid.UUID, dataset_id: uuid.UUID, version_id: uuid.UUID
) -> DatasetVersion:
    source = get_version(session, user_id, dataset_id, version_id)
    count = session.scalar(select(func.count()).where(DatasetVersion.dataset_id == dataset_id))
    copy = DatasetVersion(
        dataset_id=dataset_id,
        user_id=user_id,
        name=f"v{(count or 0) + 1}",
        description=source.description,
        config=source.config,
    )
    session.add(copy)
    session.flush()
    # Read now: copying the rows page by page lets go of every object.
    copy_id, default_split = copy.id, source.default_split
    splits = _copy_rows(
        session,
        select(DatasetSplit).where(DatasetSplit.version_id == version_id),
        DatasetSplit,
        copy_id,
    )
    labels = _copy_rows(
        session, select(Label).where(Label.version_id == version_id), Label, copy_id
    )
    if default_split:
        session.execute(
            update(DatasetVersion)
            .where(DatasetVersion.id == copy_id)
            .values(default_split=str(splits.get(uuid.UUID(default_split), "")))
        )
    items = _copy_items(session, version_id, copy_id)
    _copy_memberships(session, items, splits)
    _copy_annotations(session, version_id, copy_id, items, labels, splits)
    _copy_states(session, version_id, copy_id, items)
    session.flush()
    return load_version(session, user_id, dataset_id, copy_id)


def _copy_rows(
    session: Session, query: Select[Any], model: type[Any], copy_id: uuid.UUID
) -> dict[uuid.UUID, uuid.UUID]:
    """The rows `query` picks (splits, labels or items), in their order,
    copied into the version `copy_id`: old id -> new id."""
    mapping: dict[uuid.UUID, uuid.UUID] = {}
    for batch in _pages(session, query, model):
        rows = []
        for row in batch:
            new_id = mapping[row.id] = uuid.uuid4()
            rows.append({**_columns(row), "id": new_id, "version_id": copy_id})
        _insert(session, model, rows)
    return mapping


def _copy_items(
    session: Session, version_id: uuid.UUID, copy_id: uuid.UUID
) -> dict[uuid.UUID, uuid.UUID]:
    """The items, in their order (the copy lists them as the source does);
    locked against a delete or a new file meanwhile, whose removal of the
    old file would not see this copy's rows yet."""
    query = select(DatasetItem).where(DatasetItem.version_id == version_id)
    return _copy_rows(session, query.with_for_update(read=True), DatasetItem, copy_id)


def _copy_memberships(
    session: Session, items: dict[uuid.UUID, uuid.UUID], splits: dict[uuid.UUID, uuid.UUID]
) -> None:
    if not splits:
        return
    query = select(item_splits.c.item_id, item_splits.c.split_id).where(
        item_splits.c.split_id.in_(list(splits))
    )
    rows = [
        {"item_id": items[item_id], "split_id": splits[split_id]}
        for item_id, split_id in session.execute(query)
        if item_id in items
    ]
    for start in range(0, len(rows), BATCH):
        session.execute(insert(item_splits), rows[start : start + BATCH])


def _copy_annotations(
    session: Session,
    version_id: uuid.UUID,
    copy_id: uuid.UUID,
    items: dict[uuid.UUID, uuid.UUID],
    labels: dict[uuid.UUID, uuid.UUID],
    splits: dict[uuid.UUID, uuid.UUID],
) -> None:
    query = select(Annotation).where(Annotation.version_id == version_id)
    for batch in _pages(session, query, Annotation):
        rows = [
            {
                **_columns(row),
                "id": uuid.uuid4(),
                "version_id": copy_id,
                "item_id": items[row.item_id],
                "label_id": labels[row.label_id],
                "split_id": splits.get(row.split_id) if row.split_id else None,
                # The job that wrote it ran for the source's item.
                "job_id": None,
            }
            for row in batch
            if row.item_id in items and row.label_id in labels
        ]
        _insert(session, Annotation, rows)


def _copy_states(
    session: Session,
    version_id: uuid.UUID,
    copy_id: uuid.UUID,
    items: dict[uuid.UUID, uuid.UUID],
) -> None:
    query = select(ItemState).where(ItemState.dataset_version_id == version_id)
    for batch in _pages(session, query, ItemState):
        rows = [
            {
                **_columns(row),
                "id": state_id(items[row.item_id], copy_id),
                "item_id": items[row.item_id],
                "dataset_version_id": copy_id,
            }
            for row in batch
            if row.item_id in items
        ]
        _insert(session, ItemState, rows)


def _columns(row: Any) -> dict[str, Any]:
    now = utcnow()
    values = {
        column.key: getattr(row, column.key)
        for column in row.__mapper__.column_attrs
        if column.key not in _OWN
    }
    return {**values, "created_at": row.created_at, "updated_at": now}


def _pages(session: Session, query: Select[Any], model: Any) -> Iterator[Sequence[Any]]:
    """The query's rows a page at a time, each read whole before the next
    (by keyset on the order (created_at, id)), so that no cursor is open
    while the copies are written."""
    last: tuple[Any, Any] | None = None
    while True:
        page = query.order_by(model.created_at, model.id).limit(BATCH)
        if last is not None:
            page = page.where(after_row(model, last))
        rows = session.scalars(page).all()
        if not rows:
            return
        yield rows
        last = (rows[-1].created_at, rows[-1].id)
        session.expunge_all()


def _insert(session: Session, model: type[Any], rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), BATCH):
        session.execute(insert(model), rows[start : start + BATCH])

"""A version's items as an export reads them: a page at a time, each page
in a transaction of its own (no transaction stays open while the zip is
sent), with their splits and annotations by name."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from shared.db import session_scope
from shared.models import Annotation, DatasetItem, DatasetSplit, Label, item_splits
from shared.services.scope import after_row

PAGE = 500


@dataclass
class Record:
    id: uuid.UUID
    created_at: datetime
    name: str
    text: str
    file_key: str | None
    file_name: str
    extension: str
    media_type: str
    size: int
    splits: list[str] = field(default_factory=list)
    # (label name, coordinates as stored: "" for the whole item)
    annotations: list[tuple[str, str]] = field(default_factory=list)


def region(coordinates: str) -> dict[str, Any] | None:
    """An annotation's region, a box {x, y, width, height} in pixels or a
    span {start, end} in characters; None for a whole-item label."""
    if not coordinates:
        return None
    try:
        found = json.loads(coordinates)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def is_box(found: dict[str, Any] | None) -> bool:
    return found is not None and {"x", "y", "width", "height"} <= found.keys()


def is_span(found: dict[str, Any] | None) -> bool:
    return found is not None and {"start", "end"} <= found.keys()


def version_labels(session: Session, version_id: uuid.UUID) -> list[str]:
    """The version's label names in their order (YOLO's class indices)."""
    query = select(Label.name).where(Label.version_id == version_id)
    return list(dict.fromkeys(session.scalars(query.order_by(Label.index, Label.created_at))))


def has_boxes(session: Session, version_id: uuid.UUID) -> bool:
    query = select(Annotation.id).where(
        Annotation.version_id == version_id, Annotation.coordinates.contains('"width"')
    )
    return session.scalar(query.limit(1)) is not None


def records(
    version_id: uuid.UUID, split_id: uuid.UUID | None, split_name: str = ""
) -> Iterator[Record]:
    """The version's items (only the split's, when given, each then in that
    split alone) in the items' order."""
    cursor: tuple[datetime, uuid.UUID] | None = None
    while True:
        with session_scope() as session:
            page = _page(session, version_id, split_id, cursor)
        if not page:
            return
        for record in page:
            if split_id is not None:
                record.splits = [split_name]
            yield record
        cursor = (page[-1].created_at, page[-1].id)


def _page(
    session: Session,
    version_id: uuid.UUID,
    split_id: uuid.UUID | None,
    cursor: tuple[datetime, uuid.UUID] | None,
) -> list[Record]:
    query = select(DatasetItem).where(DatasetItem.version_id == version_id)
    if split_id is not None:
        query = query.where(
            exists().where(
                item_splits.c.item_id == DatasetItem.id, item_splits.c.split_id == split_id
            )
        )
    if cursor is not None:
        query = query.where(after_row(DatasetItem, cursor))
    items = session.scalars(query.order_by(DatasetItem.created_at, DatasetItem.id).limit(PAGE))
    page = {
        item.id: Record(
            id=item.id,
            created_at=item.created_at,
            name=item.name,
            text=item.text,
            file_key=item.file_key,
            file_name=item.file_name,
            extension=item.extension,
            media_type=item.file_media_type,
            size=item.file_size,
        )
        for item in items
    }
    if not page:
        return []
    ids = list(page)
    memberships = (
        select(item_splits.c.item_id, DatasetSplit.name)
        .join(DatasetSplit, DatasetSplit.id == item_splits.c.split_id)
        .where(item_splits.c.item_id.in_(ids))
        .order_by(DatasetSplit.created_at, DatasetSplit.id)
    )
    for item_id, name in session.execute(memberships):
        page[item_id].splits.append(name)
    annotations = (
        select(Annotation.item_id, Label.name, Annotation.coordinates)
        .join(Label, Label.id == Annotation.label_id)
        .where(Annotation.item_id.in_(ids))
        .order_by(Annotation.created_at, Annotation.id)
    )
    for item_id, name, coordinates in session.execute(annotations):
        page[item_id].annotations.append((name, coordinates))
    return list(page.values())

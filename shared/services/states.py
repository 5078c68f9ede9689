"""Item states: an item's workflow state in a version, one row per (item,
version), written under the items' If-Match rules. A state never written
has no row and reads as a scaffold at version 0; writing with If-Match "0"
creates it only if no one else has meanwhile."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.db import upsert_insert
from shared.errors import PreconditionFailed
from shared.models import ItemState, utcnow
from shared.schemas import ItemStateUpdate
from shared.services.scope import Page, get_item, get_version, paged

# Row ids are derived from the (item, version) pair, so that the scaffold
# of a state never written already names the row it becomes.
_NAMESPACE = uuid.UUID("5f0c4a1e-3b7d-4e0f-9a51-6b1f3c2d8e47")


def state_id(item_id: uuid.UUID, version_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{item_id}:{version_id}")


def get_state(
    session: Session,
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    item_id: uuid.UUID,
) -> ItemState | dict[str, Any]:
    get_item(session, user_id, dataset_id, version_id, item_id)
    row = _find(session, item_id, version_id)
    return row if row is not None else _scaffold(user_id, item_id, version_id)


def put_state(
    session: Session,
    user_id: uuid.UUID,
    dataset_id: uuid.UUID,
    version_id: uuid.UUID,
    item_id: uuid.UUID,
    body: ItemStateUpdate,
    if_match: int | None,
) -> ItemState:
    get_item(session, user_id, dataset_id, version_id, item_id)
    if if_match in (None, 0) and _insert(session, user_id, item_id, version_id, body):
        return _read(session, item_id, version_id)
    statement = update(ItemState).where(
        ItemState.item_id == item_id, ItemState.dataset_version_id == version_id
    )
    # If-Match "0" only creates: a row found means someone wrote it first.
    if if_match is not None:
        statement = statement.where(ItemState.version == if_match)
    statement = statement.values(
        **body.changes(), version=ItemState.version + 1, updated_at=utcnow()
    )
    if session.execute(statement.returning(ItemState.id)).one_or_none() is None:
        current = session.scalar(
            select(ItemState.version).where(
                ItemState.item_id == item_id, ItemState.dataset_version_id == version_id
            )
        )
        current = current or 0
        raise PreconditionFailed(
            f"The item's state is at version {current}, not {if_match}.", current_version=current
        )
    return _read(session, item_id, version_id)


def list_states(
    session: Session, user_id: uuid.UUID, dataset_id: uuid.UUID, version_id: uuid.UUID, page: Page
) -> tuple[list[ItemState], int]:
    """The version's written states (a scaffold is no row: listing every
    item's would be the items list again)."""
    get_version(session, user_id, dataset_id, version_id)
    query = (
        select(ItemState)
        .where(ItemState.dataset_version_id == version_id)
        .order_by(ItemState.created_at, ItemState.id)
    )
    return paged(session, query, page)


def _insert(
    session: Session,
    user_id: uuid.UUID,
    item_id: uuid.UUID,
    version_id: uuid.UUID,
    body: ItemStateUpdate,
) -> bool:
    """Create the state at version 1; False when it exists already (an
    insert that lost the race to another is no error, only a no)."""
    now = utcnow()
    statement = (
        upsert_insert(session)(ItemState)
        .values(
            id=state_id(item_id, version_id),
            created_at=now,
            updated_at=now,
            item_id=item_id,
            dataset_version_id=version_id,
            user_id=user_id,
            version=1,
            **body.model_dump(),
        )
        .on_conflict_do_nothing()
        .returning(ItemState.id)
    )
    return session.execute(statement).one_or_none() is not None


def _find(session: Session, item_id: uuid.UUID, version_id: uuid.UUID) -> ItemState | None:
    return session.scalars(
        select(ItemState).where(
            ItemState.item_id == item_id, ItemState.dataset_version_id == version_id
        )
    ).one_or_none()


def _read(session: Session, item_id: uuid.UUID, version_id: uuid.UUID) -> ItemState:
    session.expire_all()
    row = _find(session, item_id, version_id)
    assert row is not None, "written in this transaction"
    return row


def _scaffold(user_id: uuid.UUID, item_id: uuid.UUID, version_id: uuid.UUID) -> dict[str, Any]:
    return {
        "id": state_id(item_id, version_id),
        "created_at": None,
        "updated_at": None,
        "name": "",
        "description": "",
        "item_id": item_id,
        "dataset_version_id": version_id,
        "user_id": user_id,
        "state": "",
        "version": 0,
    }

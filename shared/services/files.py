"""File bookkeeping that must wait for the database to commit."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from shared.db import after_commit
from shared.storage import get_storage


def delete_after_commit(session: Session, keys: Iterable[str]) -> None:
    """Delete stored files once the rows pointing at them are gone for good."""
    keys = list(keys)
    if keys:
        storage = get_storage()

        def delete() -> None:
            for key in keys:
                storage.delete(key)

        after_commit(session, delete)

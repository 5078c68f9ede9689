"""Users and their API keys. Only a key's SHA-256 is stored.

The keys are 256 random bits, so a fast hash is enough: there is nothing to
guess that a slow password hash would protect.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.errors import Conflict, Unauthorized
from shared.models import ApiKey, User

KEY_PREFIX = "ifk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_user(session: Session, name: str) -> tuple[User, str]:
    """A new user and a first API key for it, shown this once."""
    if session.scalar(select(User).where(User.name == name)) is not None:
        raise Conflict(f"A user named {name!r} exists already.")
    user = User(name=name)
    session.add(user)
    session.flush()
    return user, create_key(session, user.id)


def create_key(session: Session, user_id: uuid.UUID) -> str:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(user_id=user_id, key_hash=hash_key(key), prefix=key[:12]))
    session.flush()
    return key


def authenticate(session: Session, key: str) -> uuid.UUID:
    """The id of the user owning `key`, else Unauthorized."""
    digest = hash_key(key)
    stored = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    # The lookup is by hash, so timing tells nothing of the key; the compare
    # is constant-time anyway, so that it stays safe if the lookup changes.
    if stored is None or not hmac.compare_digest(stored.key_hash, digest):
        raise Unauthorized()
    return stored.user_id


def key_is_valid(session: Session, key: str) -> bool:
    try:
        authenticate(session, key)
    except Unauthorized:
        return False
    return True

"""The operator's providers as a user sees them, and the user's own keys for
them: write-only. A key is stored encrypted, answered by no route, and
opened only by the worker that calls the provider for one of its owner's
post-processors."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.errors import NotFound, ServiceUnavailable
from shared.models import ProviderKey, utcnow
from shared.provider_config import ProviderConnection
from shared.secret_box import SecretKeyMissing, seal
from shared.settings import get_settings


@dataclass(frozen=True)
class ProviderView:
    name: str
    protocol: str
    models: list[str]
    user_base_url: bool
    has_key: bool  # whether the caller has stored a key of their own
    key_updated_at: datetime | None


def list_providers(session: Session, user_id: uuid.UUID) -> list[ProviderView]:
    stored = {
        key.provider: key
        for key in session.scalars(select(ProviderKey).where(ProviderKey.user_id == user_id))
    }
    return [
        _view(name, connection, stored.get(name))
        for name, connection in sorted(get_settings().provider_connections.items())
    ]


def store_key(session: Session, user_id: uuid.UUID, provider: str, api_key: str) -> ProviderView:
    """Store (or replace) the caller's key for a provider."""
    connection = _connection(provider)
    try:
        sealed = seal(api_key)
    except (SecretKeyMissing, OSError) as error:
        raise ServiceUnavailable(
            f"Keys cannot be stored on this installation now: {error}."
        ) from None
    key = _stored(session, user_id, provider)
    if key is None:
        try:
            # A savepoint: a PUT racing this one may insert first.
            with session.begin_nested():
                key = ProviderKey(user_id=user_id, provider=provider, sealed_key=sealed)
                session.add(key)
        except IntegrityError:
            key = _stored(session, user_id, provider)
            assert key is not None
    key.sealed_key = sealed
    key.updated_at = utcnow()
    session.flush()
    return _view(provider, connection, key)


def delete_key(session: Session, user_id: uuid.UUID, provider: str) -> ProviderView:
    """Forget the caller's key for a provider; deleting none is no error."""
    connection = _connection(provider)
    session.execute(
        delete(ProviderKey).where(ProviderKey.user_id == user_id, ProviderKey.provider == provider)
    )
    return _view(provider, connection, None)


def sealed_key(session: Session, user_id: uuid.UUID, provider: str) -> str | None:
    """The owner's key for a provider, still encrypted, for a job's run."""
    return session.scalar(
        select(ProviderKey.sealed_key).where(
            ProviderKey.user_id == user_id, ProviderKey.provider == provider
        )
    )


def _connection(provider: str) -> ProviderConnection:
    connection = get_settings().provider_connections.get(provider)
    if connection is None:
        raise NotFound(f"No provider is named {provider!r}.")
    return connection


def _stored(session: Session, user_id: uuid.UUID, provider: str) -> ProviderKey | None:
    return session.scalar(
        select(ProviderKey).where(ProviderKey.user_id == user_id, ProviderKey.provider == provider)
    )


def _view(name: str, connection: ProviderConnection, key: ProviderKey | None) -> ProviderView:
    return ProviderView(
        name=name,
        protocol=connection.protocol,
        models=list(connection.models),
        user_base_url=connection.user_base_url,
        has_key=key is not None,
        key_updated_at=key.updated_at if key is not None else None,
    )

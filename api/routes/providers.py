"""The operator's providers, and the caller's own key for each: write-only."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from api.http import Context, endpoint, public
from shared.schemas import ProviderKeySet, ProviderPublic
from shared.services import provider_keys


@endpoint(ProviderPublic, many=True)
def list_providers(c: Context) -> list[dict[str, Any]]:
    return [
        public(ProviderPublic, row) for row in provider_keys.list_providers(c.session, c.user_id)
    ]


@endpoint(ProviderPublic, body=ProviderKeySet, errors=(503,))
def store_key(c: Context) -> dict[str, Any]:
    row = provider_keys.store_key(c.session, c.user_id, c.name("provider"), c.body.api_key)
    return public(ProviderPublic, row)


@endpoint(ProviderPublic)
def delete_key(c: Context) -> dict[str, Any]:
    row = provider_keys.delete_key(c.session, c.user_id, c.name("provider"))
    return public(ProviderPublic, row)


PROVIDERS = "/providers"
KEY = PROVIDERS + "/{provider}/key"

routes = [
    Route(PROVIDERS, list_providers, methods=["GET"]),
    Route(KEY, store_key, methods=["PUT"]),
    Route(KEY, delete_key, methods=["DELETE"]),
]

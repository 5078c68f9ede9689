"""The OpenAPI document: valid, served without auth, and naming every route."""

from __future__ import annotations

import httpx
import schemathesis
from starlette.routing import BaseRoute, Mount, Route

from api.app import app
from api.openapi import openapi_path


def app_operations(routes: list[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, Mount):
            found |= app_operations(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            methods = (route.methods or set()) - {"HEAD"}
            found |= {(method.lower(), openapi_path(prefix + route.path)) for method in methods}
    return found


def test_the_document_is_valid_openapi_and_needs_no_key(api_url: str) -> None:
    response = httpx.get(api_url + "/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    # Against the OpenAPI 3.1 meta-schema; raises on the first error.
    schemathesis.openapi.from_dict(response.json()).validate()


def test_the_document_names_every_route_of_the_app(api_url: str) -> None:
    document = httpx.get(api_url + "/api/v1/openapi.json").json()
    documented = {
        (method, path) for path, operations in document["paths"].items() for method in operations
    }
    assert documented == app_operations(app.routes)

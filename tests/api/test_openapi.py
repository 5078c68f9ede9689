"""The OpenAPI document is built from the routes' own declarations: valid,
served without a key, naming every route with its parameters, body and
statuses, and what the routes answer is what it says."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.core.failures import FailureGroup
from schemathesis.openapi.checks import JsonSchemaError
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from api.app import app
from api.http import Context, endpoint
from api.openapi import openapi_document, openapi_path, operations
from shared.schemas import DatasetCreate, DatasetPublic
from tests.builders import one_of_everything

DOCUMENT = "/api/v1/openapi.json"


@pytest.fixture(scope="module")
def document(api_url: str) -> dict[str, Any]:
    response = httpx.get(api_url + DOCUMENT)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return dict(response.json())


def test_the_document_is_valid_openapi_and_needs_no_key(document: dict[str, Any]) -> None:
    # Against the OpenAPI 3.1 meta-schema; raises on the first error.
    schemathesis.openapi.from_dict(document).validate()


def test_every_route_is_documented_as_declared(document: dict[str, Any]) -> None:
    found = list(operations(app.routes))
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert documented == {(method.lower(), openapi_path(path)) for method, path, _ in found}
    for method, path, declared in found:
        operation = document["paths"][openapi_path(path)][method.lower()]
        statuses = {int(status) for status in operation["responses"]}
        assert declared.status in statuses and set(declared.errors) <= statuses, path
        queries = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
        paging = {"page_size", "page_count"} if declared.paged else set()
        assert queries == {query.name for query in declared.query} | paging, path
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if isinstance(declared.body, type):
            assert body["schema"] == {"$ref": f"#/components/schemas/{declared.body.__name__}"}


def test_a_route_declared_in_one_place_appears_with_its_schemas() -> None:
    @endpoint(DatasetPublic, body=DatasetCreate, status=201)
    def create_thing(c: Context) -> dict[str, Any]:
        return {}

    routes = [Mount("/api/v1", routes=[Route("/things", create_thing, methods=["POST"])])]
    operation = openapi_document(routes)["paths"]["/api/v1/things"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DatasetCreate"
    }
    assert operation["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DatasetPublic"
    }


def test_a_route_that_declares_nothing_is_refused() -> None:
    async def undeclared(request: Request) -> JSONResponse:
        return JSONResponse({})

    with pytest.raises(TypeError, match="/api/v1/secret declares nothing"):
        openapi_document([Mount("/api/v1", routes=[Route("/secret", undeclared)])])


def test_every_read_answers_as_documented(api_url: str, client: httpx.Client) -> None:
    """Each GET with the caller's own rows: the documented success status,
    content type and body schema."""
    ids = one_of_everything(client)
    schema = schemathesis.openapi.from_dict(openapi_document(app.routes))
    checks = [status_code_conformance, content_type_conformance, response_schema_conformance]
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() != "GET":
            continue
        parameters = operation.definition.raw.get("parameters", [])
        names = [parameter["name"] for parameter in parameters if parameter["in"] == "path"]
        # Splits and labels share one route table, with `row_id` for either.
        row = ids["label_id"] if "/labels/" in operation.path else ids["split_id"]
        values = {**ids, "row_id": row}
        case = operation.Case(path_parameters={name: values[name] for name in names})
        response = case.call(base_url=api_url, headers=dict(client.headers))
        assert response.status_code == 200, (operation.path, response.text[:300])
        case.validate_response(response, checks=checks)
        checked += 1
    assert checked == sum(1 for method, _p, _d in operations(app.routes) if method == "GET")


def test_an_answer_unlike_the_document_fails_the_check(api_url: str, client: httpx.Client) -> None:
    """The conformance check above can fail: a route that answers other than
    it declares is caught."""

    @endpoint(DatasetPublic)
    def wrong(c: Context) -> dict[str, Any]:
        return {"name": 5}

    routes = [Mount("/api/v1", routes=[Route("/wrong", wrong, methods=["GET"])])]
    schema = schemathesis.openapi.from_dict(openapi_document(routes))
    case = schema["/api/v1/wrong"]["GET"].Case()
    with TestClient(Starlette(routes=routes)) as served:
        response = served.get("/api/v1/wrong", headers=dict(client.headers))
    assert response.status_code == 200
    with pytest.raises(FailureGroup, match="failures") as raised:
        case.validate_response(response, checks=[response_schema_conformance])
    assert all(isinstance(failure, JsonSchemaError) for failure in raised.value.exceptions)

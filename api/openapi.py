"""The OpenAPI 3.1 document of the API, served at /api/v1/openapi.json.

Built from the app's routes: each route's handler carries its declaration
(api/http.py: what it takes and answers) beside its code, and the pydantic
schemas it names; a route without one is an error, not a gap in the
document. tests/api/test_openapi.py checks the document against the app and
tests/faults fuzzes the API from it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from api.http import (
    FILE,
    PAGE_COUNT,
    PAGE_SIZE,
    UPLOAD,
    ZIP,
    Bounds,
    Declaration,
    declaration_of,
    declare,
)
from api.multipart import FILE_FIELD
from shared.exchange import Format
from shared.provider_config import NAME_PATTERN
from shared.settings import get_settings

API_PREFIX = "/api/v1"
_PATH_PARAMETER = re.compile(r"\{(\w+)(?::(\w+))?\}")
_UUID = {"type": "string", "format": "uuid"}
# A path parameter without Starlette's `:uuid` names one of the operator's
# providers, or an import's format.
_NAME = {"type": "string", "pattern": NAME_PATTERN}
_OTHER = {"format": {"type": "string", "enum": [fmt.value for fmt in Format]}}
PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
        "current_version": {"type": "integer"},
    },
}
# What every route that needs a key may answer: 429 is for too many failed
# authentications from the caller's address.
ALWAYS = (401, 404, 422, 429, 503)


def operations(
    routes: Sequence[BaseRoute], prefix: str = ""
) -> Iterator[tuple[str, str, Declaration]]:
    """(method, path as Starlette spells it, declaration) of every route."""
    for route in routes:
        if isinstance(route, Mount):
            yield from operations(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            declaration = declaration_of(route.endpoint)
            if declaration is None:
                raise TypeError(f"{prefix + route.path} declares nothing for the document")
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield method, prefix + route.path, declaration


def openapi_path(path: str) -> str:
    """`/datasets/{dataset_id:uuid}` as OpenAPI spells it."""
    return _PATH_PARAMETER.sub(r"{\1}", path)


def openapi_document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    found = list(operations(routes))
    models: set[tuple[type[BaseModel], JsonSchemaMode]] = set()
    for _method, _path, declared in found:
        if isinstance(declared.answer, type):
            models.add((declared.answer, "serialization"))
        if isinstance(declared.body, type):
            models.add((declared.body, "validation"))
    ordered = sorted(models, key=lambda pair: (pair[0].__name__, pair[1]))
    schemas, definitions = models_json_schema(ordered, ref_template="#/components/schemas/{model}")
    _name_the_providers(definitions.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for method, path, declared in found:
        paths.setdefault(openapi_path(path), {})[method.lower()] = _operation(
            method, path, declared, schemas
        )
    return {
        "openapi": "3.1.0",
        "info": {"title": "itemflow", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": {**definitions.get("$defs", {}), "Problem": PROBLEM},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


@declare(Declaration(public="This document"))
async def serve_openapi(request: Request) -> Response:
    if not hasattr(request.app.state, "openapi"):
        request.app.state.openapi = openapi_document(request.app.routes)
    return JSONResponse(request.app.state.openapi)


def _operation(
    method: str, path: str, declared: Declaration, schemas: dict[Any, Any]
) -> dict[str, Any]:
    if declared.public:
        media_type = declared.public_media_type
        schema = {} if media_type == "application/json" else {"type": "string"}
        ok = {"description": declared.public, "content": {media_type: {"schema": schema}}}
        return {
            "operationId": _operation_id(method, path),
            "security": [],
            "parameters": [],
            "responses": {"200": ok, **_problems(*declared.errors)},
        }
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": _UUID if kind == "uuid" else _OTHER.get(name, _NAME),
        }
        for name, kind in _PATH_PARAMETER.findall(path)
    ]
    if declared.paged:
        parameters += [
            {"name": "page_size", "in": "query", "schema": _integer(PAGE_SIZE)},
            {"name": "page_count", "in": "query", "schema": _integer(PAGE_COUNT)},
        ]
    parameters += [
        {"name": query.name, "in": "query", "schema": query.schema()} for query in declared.query
    ]
    if declared.if_match:
        parameters.append({"name": "If-Match", "in": "header", "schema": {"type": "string"}})
    errors = {*ALWAYS, *declared.errors}
    result: dict[str, Any] = {"operationId": _operation_id(method, path), "parameters": parameters}
    if declared.body == UPLOAD:
        form = {
            "type": "object",
            "required": [FILE_FIELD],
            "properties": {FILE_FIELD: {"type": "string", "format": "binary"}},
        }
        result["requestBody"] = {
            "required": True,
            "content": {"multipart/form-data": {"schema": form}},
        }
        errors |= {400, 413, 415}
    elif declared.body is not None:
        content = {"application/json": {"schema": schemas[declared.body, "validation"]}}
        result["requestBody"] = {"required": not declared.body_optional, "content": content}
        errors |= {400, 413, 415}
    result["responses"] = {
        str(declared.status): _answer(declared, schemas),
        **_problems(*sorted(errors - {304})),
    }
    if 304 in errors:
        result["responses"]["304"] = {"description": "Not Modified"}
    return result


def _answer(declared: Declaration, schemas: dict[Any, Any]) -> dict[str, Any]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    if declared.answer == FILE:
        return {"description": "The stored bytes, or a JPEG thumbnail", "content": {"*/*": binary}}
    if declared.answer == ZIP:
        return {"description": "A zip, sent as it is made", "content": {"application/zip": binary}}
    schema: dict[str, Any] = (
        schemas[declared.answer, "serialization"] if isinstance(declared.answer, type) else {}
    )
    if declared.many:
        schema = {"type": "array", "items": schema}
    answer: dict[str, Any] = {
        "description": "OK",
        "content": {"application/json": {"schema": schema}},
    }
    if declared.paged:
        total = {"schema": {"type": "integer"}, "description": "Rows in all pages"}
        answer["headers"] = {"X-Total-Count": total}
    return answer


def _integer(bounds: Bounds) -> dict[str, Any]:
    return {
        "type": "integer",
        "minimum": bounds.minimum,
        "maximum": bounds.maximum,
        "default": bounds.default,
    }


def _problems(*statuses: int) -> dict[str, Any]:
    content = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {str(s): {"description": HTTPStatus(s).phrase, "content": content} for s in statuses}


def _operation_id(method: str, path: str) -> str:
    relative = openapi_path(path).removeprefix(API_PREFIX)
    words = re.sub(r"\{[^}]*\}", "one", relative).strip("/").replace("-", "_").replace(".", "_")
    return "_".join([method.lower(), *words.split("/")])


def _name_the_providers(definitions: dict[str, Any]) -> None:
    """A post-processor's `external_provider` is one of the providers this
    installation's operator declared: the document names them."""
    names = sorted(get_settings().provider_connections)
    for schema in definitions.values():
        field = schema.get("properties", {}).get("external_provider", {})
        for alternative in field.get("anyOf", []):
            if alternative.get("type") == "string":
                alternative["enum"] = names

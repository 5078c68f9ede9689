"""The OpenAPI 3.1 document of the API, served at /api/v1/openapi.json.

Built from one table of operations and the pydantic schemas the routes use,
so it stays in step with the code; tests/faults checks that it names every
route the app has and fuzzes the API from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.routes.datasets import DATASET, VERSION
from api.routes.items import ITEM
from api.routes.postprocessors import ONE, POST_PROCESSORS
from api.routes.providers import KEY, PROVIDERS
from api.routes.version_parts import ANNOTATION
from shared.models import JobStatus
from shared.schemas import (
    AnnotationCreate,
    AnnotationPublic,
    AnnotationUpdate,
    DatasetCreate,
    DatasetPublic,
    DatasetUpdate,
    ItemCreate,
    ItemPublic,
    ItemUpdate,
    ItemWithJobStatus,
    JobPublic,
    JobRetry,
    JobWithDetails,
    LabelCreate,
    LabelPublic,
    LabelUpdate,
    PostProcessorCreate,
    PostProcessorPublic,
    PostProcessorUpdate,
    PostProcessorWithDetails,
    ProviderKeySet,
    ProviderPublic,
    SplitCreate,
    SplitPublic,
    SplitUpdate,
    VersionCreate,
    VersionPublic,
    VersionUpdate,
)
from shared.settings import get_settings

PREFIX = "/api/v1"
UPLOAD = "upload"  # the one body that is multipart/form-data, not a schema
FILE = "file"  # the one answer that is the stored bytes, not a schema
UPLOAD_FIELD = "file"  # the multipart part that carries the upload


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # as Starlette spells it, relative to PREFIX
    answer: type[BaseModel] | str | None
    body: type[BaseModel] | str | None = None
    status: int = 200
    many: bool = False  # answers a plain array of `answer`
    paged: bool = False  # page_size and page_count, and X-Total-Count
    query: tuple[str, ...] = ()  # filters, named in QUERY
    if_match: bool = False
    body_optional: bool = False
    errors: tuple[int, ...] = ()  # beyond those every operation may answer


def _crud(
    path: str, one: str, public: type[BaseModel], create: type[BaseModel], update: type[BaseModel]
) -> list[Operation]:
    return [
        Operation("GET", path, public, many=True, paged=True),
        Operation("POST", path, public, create, status=201),
        Operation("GET", one, public),
        Operation("PUT", one, public, update),
        Operation("DELETE", one, public),
    ]


SPLITS, LABELS = VERSION + "/splits", VERSION + "/labels"
OPERATIONS = [
    *_crud("/datasets", DATASET, DatasetPublic, DatasetCreate, DatasetUpdate),
    *_crud(DATASET + "/versions", VERSION, VersionPublic, VersionCreate, VersionUpdate),
    *_crud(SPLITS, SPLITS + "/{row_id:uuid}", SplitPublic, SplitCreate, SplitUpdate),
    *_crud(LABELS, LABELS + "/{row_id:uuid}", LabelPublic, LabelCreate, LabelUpdate),
    Operation("POST", VERSION + "/annotations", AnnotationPublic, AnnotationCreate, status=201),
    Operation("PUT", ANNOTATION, AnnotationPublic, AnnotationUpdate),
    Operation("DELETE", ANNOTATION, AnnotationPublic),
    Operation(
        "GET",
        VERSION + "/items",
        ItemWithJobStatus,
        many=True,
        paged=True,
        query=("split_id", "job_status"),
    ),
    Operation("POST", VERSION + "/items", ItemPublic, ItemCreate, status=201),
    Operation("GET", ITEM, ItemWithJobStatus),
    Operation("PUT", ITEM, ItemPublic, ItemUpdate, if_match=True, errors=(412,)),
    Operation("DELETE", VERSION + "/splits/{split_id:uuid}/items/{item_id:uuid}", ItemPublic),
    Operation("POST", ITEM + "/upload", ItemPublic, UPLOAD, if_match=True, errors=(412,)),
    Operation("GET", ITEM + "/download", FILE, query=("thumbnail",), errors=(304, 415)),
    Operation("GET", POST_PROCESSORS, PostProcessorWithDetails, many=True),
    Operation("POST", POST_PROCESSORS, PostProcessorPublic, PostProcessorCreate, status=201),
    Operation(
        "GET",
        POST_PROCESSORS + "/jobs",
        JobWithDetails,
        many=True,
        paged=True,
        query=("status", "post_processor_id", "item_id"),
    ),
    Operation("GET", ONE, PostProcessorWithDetails),
    Operation("PUT", ONE, PostProcessorPublic, PostProcessorUpdate),
    Operation("DELETE", ONE, PostProcessorPublic),
    Operation("GET", ITEM + "/jobs", JobWithDetails, many=True),
    Operation(
        "POST",
        ITEM + "/jobs/{job_id:uuid}/retry",
        JobPublic,
        JobRetry,
        body_optional=True,
        errors=(409,),
    ),
    Operation("GET", PROVIDERS, ProviderPublic, many=True),
    Operation("PUT", KEY, ProviderPublic, ProviderKeySet, errors=(503,)),
    Operation("DELETE", KEY, ProviderPublic),
    Operation("GET", "/applications", None, many=True),
]

_uuid = {"type": "string", "format": "uuid"}
_job_status = {"type": "string", "enum": [status.value for status in JobStatus]}
QUERY: dict[str, dict[str, Any]] = {
    "page_size": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    "page_count": {"type": "integer", "minimum": 0, "maximum": 10_000_000, "default": 0},
    "split_id": _uuid,
    "job_status": _job_status,
    "status": _job_status,
    "post_processor_id": _uuid,
    "item_id": _uuid,
    "thumbnail": {"type": "boolean", "default": False},
}
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
_PATH_PARAMETER = re.compile(r"\{(\w+)(?::(\w+))?\}")
# A path parameter without Starlette's `:uuid` names one of the operator's
# providers, the only other kind of name in a path.
_NAME = {"type": "string", "pattern": r"^[a-z0-9][a-z0-9_.-]{0,19}$"}


def openapi_path(path: str) -> str:
    """`/datasets/{dataset_id:uuid}` as OpenAPI spells it."""
    return _PATH_PARAMETER.sub(r"{\1}", path)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problems(*statuses: int) -> dict[str, Any]:
    content = {"application/problem+json": {"schema": _ref("Problem")}}
    return {str(s): {"description": HTTPStatus(s).phrase, "content": content} for s in statuses}


def _answer(op: Operation, schemas: dict[Any, Any]) -> dict[str, Any]:
    if op.answer == FILE:
        binary = {"schema": {"type": "string", "format": "binary"}}
        return {"description": "The stored bytes, or a JPEG thumbnail", "content": {"*/*": binary}}
    schema: dict[str, Any] = schemas[op.answer, "serialization"] if op.answer else {}
    if op.many:
        schema = {"type": "array", "items": schema}
    answer: dict[str, Any] = {
        "description": "OK",
        "content": {"application/json": {"schema": schema}},
    }
    if op.paged:
        total = {"schema": {"type": "integer"}, "description": "Rows in all pages"}
        answer["headers"] = {"X-Total-Count": total}
    return answer


def _operation(op: Operation, schemas: dict[Any, Any]) -> dict[str, Any]:
    names = _PATH_PARAMETER.findall(op.path)
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _uuid if kind == "uuid" else _NAME}
        for name, kind in names
    ]
    query = (("page_size", "page_count") if op.paged else ()) + op.query
    parameters += [{"name": name, "in": "query", "schema": QUERY[name]} for name in query]
    if op.if_match:
        parameters.append({"name": "If-Match", "in": "header", "schema": {"type": "string"}})
    # 429: too many failed authentications from the caller's address.
    errors = {401, 404, 422, 429, 503, *op.errors}
    result: dict[str, Any] = {"operationId": _operation_id(op), "parameters": parameters}
    if op.body == UPLOAD:
        form = {
            "type": "object",
            "required": [UPLOAD_FIELD],
            "properties": {UPLOAD_FIELD: {"type": "string", "format": "binary"}},
        }
        content = {"multipart/form-data": {"schema": form}}
        result["requestBody"] = {"required": True, "content": content}
        errors |= {400, 413, 415}
    elif op.body:
        content = {"application/json": {"schema": schemas[op.body, "validation"]}}
        result["requestBody"] = {"required": not op.body_optional, "content": content}
        errors |= {400, 413, 415}
    result["responses"] = {str(op.status): _answer(op, schemas), **_problems(*sorted(errors))}
    if 304 in errors:
        result["responses"]["304"] = {"description": "Not Modified"}
    return result


def _operation_id(op: Operation) -> str:
    words = re.sub(r"\{[^}]*\}", "one", op.path).strip("/").replace("-", "_").split("/")
    return "_".join([op.method.lower(), *words])


def _public_operation(description: str, statuses: tuple[int, ...] = ()) -> dict[str, Any]:
    ok = {"description": description, "content": {"application/json": {"schema": {}}}}
    return {"security": [], "parameters": [], "responses": {"200": ok, **_problems(*statuses)}}


@cache
def openapi_document() -> dict[str, Any]:
    models: set[tuple[type[BaseModel], JsonSchemaMode]] = set()
    for op in OPERATIONS:
        if isinstance(op.answer, type):
            models.add((op.answer, "serialization"))
        if isinstance(op.body, type):
            models.add((op.body, "validation"))
    ordered = sorted(models, key=lambda pair: (pair[0].__name__, pair[1]))
    schemas, definitions = models_json_schema(ordered, ref_template="#/components/schemas/{model}")
    _name_the_providers(definitions.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        path = PREFIX + openapi_path(op.path)
        paths.setdefault(path, {})[op.method.lower()] = _operation(op, schemas)
    paths["/healthz"] = {"get": _public_operation("The process is up")}
    paths["/readyz"] = {"get": _public_operation("The database and broker answer", (503,))}
    paths[PREFIX + "/openapi.json"] = {"get": _public_operation("This document")}
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


def _name_the_providers(definitions: dict[str, Any]) -> None:
    """A post-processor's `external_provider` is one of the providers this
    installation's operator declared: the document names them."""
    names = sorted(get_settings().provider_connections)
    for schema in definitions.values():
        field = schema.get("properties", {}).get("external_provider", {})
        for alternative in field.get("anyOf", []):
            if alternative.get("type") == "string":
                alternative["enum"] = names


async def serve_openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())

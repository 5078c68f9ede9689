"""What every route needs: the caller's key, a session, the body, paging,
and its declaration: what it takes and answers, written once beside its
handler, from which the OpenAPI document is built (api/openapi.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.keycache import KeyCache
from api.ratelimit import FailedAuthLimiter
from shared.db import session_scope
from shared.errors import (
    BadRequest,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from shared.schemas import INT32_MAX
from shared.services import users
from shared.services.scope import Page
from shared.settings import get_settings

T = TypeVar("T")
Body = TypeVar("Body", bound=BaseModel)
Endpoint = Callable[[Request], Awaitable[Response]]
UPLOAD = "upload"  # a body that is one file, as multipart/form-data
FILE = "file"  # an answer that is a stored file's bytes
ZIP = "zip"  # an answer that is a zip made as it is sent


@dataclass(frozen=True)
class Bounds:
    minimum: int
    maximum: int
    default: int


PAGE_SIZE = Bounds(1, 1000, 100)
PAGE_COUNT = Bounds(0, 10_000_000, 0)


@dataclass(frozen=True)
class Query:
    """A query parameter: its name and what it holds, a UUID, a boolean
    or one of an enum's values."""

    name: str
    kind: type[Any]

    def read(self, request: Request) -> Any:
        """Its value in the request; None when it is not given."""
        raw = request.query_params.get(self.name)
        if not raw:
            return None
        if self.kind is bool:
            return raw.lower() in ("true", "1", "yes")
        try:
            return self.kind(raw)
        except ValueError:
            raise ValidationFailed(
                [{"loc": ["query", self.name], "msg": f"must be {self._words()}"}]
            ) from None

    def schema(self) -> dict[str, Any]:
        if self.kind is uuid.UUID:
            return {"type": "string", "format": "uuid"}
        if self.kind is bool:
            return {"type": "boolean", "default": False}
        return {"type": "string", "enum": [str(choice) for choice in self.kind]}

    def _words(self) -> str:
        if self.kind is uuid.UUID:
            return "a UUID"
        return "one of " + ", ".join(str(choice) for choice in self.kind)


@dataclass(frozen=True)
class Declaration:
    """What a route takes and answers."""

    answer: type[BaseModel] | str | None = None  # a schema, FILE, ZIP, or None: any JSON
    body: type[BaseModel] | str | None = None  # a schema or UPLOAD
    status: int = 200
    many: bool = False  # answers a plain array of `answer`
    paged: bool = False  # page_size and page_count, and X-Total-Count
    query: tuple[Query, ...] = ()
    if_match: bool = False
    body_optional: bool = False
    errors: tuple[int, ...] = ()  # beyond those every route may answer
    # A route that needs no key, and what it answers, in words, as what.
    public: str = ""
    public_media_type: str = "application/json"


def declare(declaration: Declaration) -> Callable[[Endpoint], Endpoint]:
    """Attach a declaration to an endpoint that `endpoint` does not wrap."""

    def attach(handler: Endpoint) -> Endpoint:
        handler.declaration = declaration  # type: ignore[attr-defined]
        return handler

    return attach


def declaration_of(handler: Any) -> Declaration | None:
    found = getattr(handler, "declaration", None)
    return found if isinstance(found, Declaration) else None


def bearer_key(request: Request) -> str:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized()
    return key.strip()


async def authenticate(request: Request) -> uuid.UUID:
    limiter = failed_auth_limiter()
    client = request.client.host if request.client else "unknown"
    try:
        key = bearer_key(request)
        digest = users.hash_key(key)
        known = key_cache().user_for(digest)
        if known is not None:
            return known

        def work() -> uuid.UUID:
            with session_scope() as session:
                return users.authenticate(session, key)

        user_id = await run_in_threadpool(work)
        key_cache().remember(digest, user_id)
        return user_id
    except Unauthorized:
        refused = limiter.over_limit(client)
        limiter.failed(client)
        if refused is not None:
            raise refused from None
        raise


@lru_cache
def key_cache() -> KeyCache:
    return KeyCache(get_settings().api_key_cache_seconds)


@lru_cache
def failed_auth_limiter() -> FailedAuthLimiter:
    return FailedAuthLimiter(get_settings().auth_failures_per_minute, window_seconds=60)


def path_ids(request: Request) -> dict[str, Any]:
    """The path's ids by name (`dataset_id`, `item_id`...): a service takes
    them as keywords of the same names, so a route passes them on whole and a
    name that does not fit fails loudly. (UUIDs, typed Any: mypy checks a
    `**` against every keyword it could fill.)"""
    return {
        name: value for name, value in request.path_params.items() if isinstance(value, uuid.UUID)
    }


@dataclass
class Context:
    """What a handler gets: the request (for its headers), an open session
    in a transaction, the caller, the validated body and the values of the
    query parameters the endpoint declares, by name (None: not given)."""

    request: Request
    session: Session
    user_id: uuid.UUID
    body: Any = None
    query: dict[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> dict[str, Any]:
        return path_ids(self.request)

    def name(self, parameter: str) -> str:
        value: str = self.request.path_params[parameter]
        return value

    @property
    def page(self) -> Page:
        return page_of(self.request)


@dataclass
class Listing:
    rows: list[Any]
    total: int


Handler = Callable[[Context], Any]


def endpoint(
    answer: type[BaseModel] | None,
    *,
    body: type[BaseModel] | None = None,
    optional_body: bool = False,
    status: int = 200,
    many: bool = False,
    query: tuple[Query, ...] = (),
    if_match: bool = False,
    errors: tuple[int, ...] = (),
) -> Callable[[Handler], Endpoint]:
    """Turn `handler(context) -> data` into a Starlette endpoint that answers
    `answer` (a Listing is paged). The handler runs in the thread pool (the
    database driver blocks) inside one transaction; what it returns is sent
    as JSON (a Listing as a plain array with X-Total-Count)."""

    def wrap(handler: Handler) -> Endpoint:
        returns = handler.__annotations__.get("return")
        paged = returns in (Listing, "Listing")

        async def run(request: Request) -> Response:
            user_id = await authenticate(request)
            parsed = await read_body(request, body, optional=optional_body) if body else None
            values = {parameter.name: parameter.read(request) for parameter in query}

            def work() -> Any:
                with session_scope() as session:
                    return handler(Context(request, session, user_id, parsed, values))

            result = await run_in_threadpool(work)
            if isinstance(result, Response):
                return result
            if isinstance(result, Listing):
                return json_response(result.rows, total=result.total)
            return json_response(result, status)

        run.__name__ = handler.__name__
        run.__doc__ = handler.__doc__
        run.declaration = Declaration(  # type: ignore[attr-defined]
            answer=answer,
            body=body,
            status=status,
            many=many or paged,
            paged=paged,
            query=query,
            if_match=if_match,
            body_optional=optional_body,
            errors=errors,
        )
        return run

    return wrap


def _named_after(service: Callable[..., Any], handler: Handler) -> Handler:
    handler.__name__ = getattr(service, "func", service).__name__  # a partial has none
    return handler


def row_endpoint(
    answer: type[BaseModel],
    service: Callable[..., Any],
    *,
    body: type[BaseModel] | None = None,
    status: int = 200,
) -> Endpoint:
    """Most of the API: an endpoint that calls `service(session, user_id=,
    <the path's ids>=, body=)` and answers the row it returns as `answer`."""

    def handler(c: Context) -> dict[str, Any]:
        given = {"body": c.body} if body else {}
        return public(answer, service(c.session, user_id=c.user_id, **c.ids, **given))

    return endpoint(answer, body=body, status=status)(_named_after(service, handler))


def page_endpoint(answer: type[BaseModel], service: Callable[..., Any]) -> Endpoint:
    """An endpoint that answers a page of the rows `service(session,
    user_id=, <the path's ids>=, page=)` returns, as `answer`."""

    def handler(c: Context) -> Listing:
        rows, total = service(c.session, user_id=c.user_id, **c.ids, page=c.page)
        return Listing(public_list(answer, rows), total)

    return endpoint(answer)(_named_after(service, handler))


@dataclass(frozen=True)
class Crud:
    """The services of a collection whose members are created, read,
    updated and deleted whole, and the schemas they take and answer."""

    answer: type[BaseModel]
    create_body: type[BaseModel]
    update_body: type[BaseModel]
    page: Callable[..., Any]
    create: Callable[..., Any]
    read: Callable[..., Any]
    update: Callable[..., Any]
    delete: Callable[..., Any]

    def routes(self, path: str, member: str) -> list[Route]:
        """List and create at `path`; read, update and delete at `member`."""

        def answering(service: Callable[..., Any], **declared: Any) -> Endpoint:
            return row_endpoint(self.answer, service, **declared)

        return [
            Route(path, page_endpoint(self.answer, self.page), methods=["GET"]),
            Route(
                path, answering(self.create, body=self.create_body, status=201), methods=["POST"]
            ),
            Route(member, answering(self.read), methods=["GET"]),
            Route(member, answering(self.update, body=self.update_body), methods=["PUT"]),
            Route(member, answering(self.delete), methods=["DELETE"]),
        ]


def public(schema: type[BaseModel], row: Any, **extra: Any) -> dict[str, Any]:
    return schema.model_validate(row).model_dump(mode="json") | extra


def public_list(schema: type[BaseModel], rows: Sequence[Any]) -> list[dict[str, Any]]:
    return [public(schema, row) for row in rows]


def json_response(data: Any, status_code: int = 200, total: int | None = None) -> Response:
    headers = {"X-Total-Count": str(total)} if total is not None else None
    return JSONResponse(data, status_code=status_code, headers=headers)


async def read_body(request: Request, schema: type[Body], *, optional: bool = False) -> Body:
    """The JSON body, validated; problems come back as 413, 415, 400 or 422."""
    limit = get_settings().max_json_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"JSON bodies are limited to {limit} bytes.")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise PayloadTooLarge(f"JSON bodies are limited to {limit} bytes.")
    if not raw.strip():
        if optional:
            return schema()
        raise ValidationFailed([{"loc": ["body"], "msg": "a JSON body is required"}])
    media_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType("Send the body as application/json.")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequest(f"The body is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValidationFailed([{"loc": ["body"], "msg": "the body must be a JSON object"}])
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise ValidationFailed(field_errors(error, "body")) from error


def field_errors(error: ValidationError, where: str) -> list[dict[str, Any]]:
    return [{"loc": [where, *item["loc"]], "msg": item["msg"]} for item in error.errors()]


def page_of(request: Request) -> Page:
    size = int_param(request, "page_size", PAGE_SIZE)
    index = int_param(request, "page_count", PAGE_COUNT)
    return Page(size=size, index=index)


def int_param(request: Request, name: str, bounds: Bounds) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return bounds.default
    try:
        value = int(raw)
    except ValueError:
        value = bounds.minimum - 1
    if not bounds.minimum <= value <= bounds.maximum:
        raise ValidationFailed(
            [
                {
                    "loc": ["query", name],
                    "msg": f"must be an integer from {bounds.minimum} to {bounds.maximum}",
                }
            ]
        )
    return value


def if_match(request: Request) -> int | None:
    """The item version named in If-Match; -1 (matches nothing) if unreadable."""
    raw = request.headers.get("if-match")
    if raw is None:
        return None
    value = raw.strip().removeprefix("W/").strip('"')
    if value == "*":
        return None
    # Versions live in 32 bits: a larger number can match no item.
    return int(value) if value.isdigit() and int(value) <= INT32_MAX else -1


def disposition(name: str) -> str:
    """A Content-Disposition that saves the answer as `name`."""
    from urllib.parse import quote

    ascii_name = name.encode("ascii", "replace").decode().replace('"', "")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"

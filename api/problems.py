"""Every error leaves as RFC 9457 problem+json, and none carries a trace."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from kombu.exceptions import OperationalError as BrokerError
from psycopg.errors import LockNotAvailable, QueryCanceled
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shared.errors import (
    AppError,
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    ServiceUnavailable,
    StorageUnavailable,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)

log = logging.getLogger("itemflow.api")

# What each error means over HTTP; a subclass answers as its nearest
# listed ancestor, and an error listed nowhere as a 500.
STATUSES: dict[type[AppError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    NotFound: 404,
    Conflict: 409,
    PreconditionFailed: 412,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    ValidationFailed: 422,
    TooManyRequests: 429,
    ServiceUnavailable: 503,
    # Answered by `unavailable` below, which keeps its reason in the log.
    StorageUnavailable: 503,
}
# RFC 9110's names, where Python's table still has older ones.
TITLES = {422: "Unprocessable Content"}


def status_of(error: AppError) -> int:
    for kind in type(error).__mro__:
        if kind in STATUSES:
            return STATUSES[kind]
    return 500


def problem(status: int, detail: str, **extensions: Any) -> Response:
    body = {
        "type": "about:blank",
        "title": TITLES.get(status) or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extensions,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if "retry_after" in extensions:
        headers["Retry-After"] = str(extensions["retry_after"])
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


async def app_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, AppError)
    status = status_of(error)
    if status == 500:
        # Raised on purpose, but not about the request: as any other 500.
        log.error("unanswerable error on %s %s: %r", request.method, request.url.path, error)
        return problem(500, "Something went wrong on our side; it has been logged.")
    return problem(status, error.detail, **error.extensions)


async def http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    detail = error.detail if error.detail != HTTPStatus(error.status_code).phrase else ""
    if error.status_code == 404 and not detail:
        detail = "No such resource."
    response = problem(error.status_code, detail or HTTPStatus(error.status_code).description)
    if error.headers:
        response.headers.update(error.headers)
    return response


async def unavailable(request: Request, error: Exception) -> Response:
    # The database, broker or storage is down or unreachable: say so, and keep the
    # driver's message (which may name hosts and SQL) in the log only.
    log.error("service unavailable on %s %s: %s", request.method, request.url.path, error)
    detail = ServiceUnavailable().detail
    if isinstance(getattr(error, "orig", None), QueryCanceled | LockNotAvailable):
        # The statement or lock timeout (API_*_TIMEOUT_SECONDS) ended it.
        detail = (
            "The database did not answer in time (a long query, or a row another "
            "session holds); try again shortly."
        )
    response = problem(503, detail)
    response.headers["Retry-After"] = "5"
    return response


async def internal_error(request: Request, error: Exception) -> Response:
    # Starlette re-raises the error after this answer, and the server logs
    # it with its trace: logging it here too would say it twice.
    return problem(500, "Something went wrong on our side; it has been logged.")


EXCEPTION_HANDLERS = {
    AppError: app_error,
    HTTPException: http_error,
    OperationalError: unavailable,
    InterfaceError: unavailable,
    PoolTimeout: unavailable,
    BrokerError: unavailable,
    # Its reason names the bucket or the endpoint: for the log only.
    StorageUnavailable: unavailable,
    Exception: internal_error,
}

"""Every error leaves as RFC 9457 problem+json, and none carries a trace."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shared.errors import AppError, ServiceUnavailable

log = logging.getLogger("itemflow.api")


def problem(status: int, detail: str, title: str | None = None, **extensions: Any) -> Response:
    body = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
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
    return problem(error.status, error.detail, error.title, **error.extensions)


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
    # The database or broker is down or unreachable: say so, and keep the
    # driver's message (which may name hosts and SQL) in the log only.
    log.error("service unavailable on %s %s: %s", request.method, request.url.path, error)
    response = problem(503, ServiceUnavailable().detail)
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
    Exception: internal_error,
}

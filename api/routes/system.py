"""Health checks, and the compatibility routes SeeMe.ai clients call."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.http import Context, Declaration, declare, endpoint
from api.problems import problem
from shared.broker import celery_app
from shared.db import get_engine
from shared.errors import StorageUnavailable
from shared.storage import get_storage


@declare(Declaration(public="The process is up"))
async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


@declare(Declaration(public="The database, broker and file storage answer", errors=(503,)))
async def readyz(request: Request) -> Response:
    checks = {
        "database": await run_in_threadpool(_database_ok),
        "broker": await run_in_threadpool(_broker_ok),
        "storage": await run_in_threadpool(_storage_ok),
    }
    if all(checks.values()):
        return JSONResponse({"status": "ok", **_words(checks)})
    down = ", ".join(name for name, ok in checks.items() if not ok)
    return problem(503, f"Not ready: {down} unreachable.", **_words(checks))


def _words(checks: dict[str, bool]) -> dict[str, str]:
    return {name: "ok" if ok else "unreachable" for name, ok in checks.items()}


def _database_ok() -> bool:
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


def _broker_ok() -> bool:
    try:
        with celery_app().connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
    except Exception:
        return False
    return True


def _storage_ok() -> bool:
    try:
        get_storage().check()
    except StorageUnavailable:
        # The reason was logged at start-up, and is with every 503 it causes.
        return False
    return True


@endpoint(None, many=True)
def applications(c: Context) -> list[Any]:
    # Models are served elsewhere; SeeMe.ai clients only need the list to exist.
    return []


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
api_routes = [Route("/applications", applications, methods=["GET"])]

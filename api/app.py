"""The Starlette application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route

from api.openapi import serve_openapi
from api.problems import EXCEPTION_HANDLERS
from api.routes import (
    backfill,
    datasets,
    docs,
    exchange,
    files,
    items,
    metrics,
    postprocessors,
    providers,
    states,
    system,
    version_parts,
)
from shared.db import bound_waits
from shared.settings import get_settings
from shared.storage import report_unavailable

log = logging.getLogger("itemflow.api")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # One line in the log if the files cannot be reached; the API serves on
    # (and /readyz says it is not ready), as through a database outage.
    await anyio.to_thread.run_sync(report_unavailable, log)
    yield


def create_app() -> Starlette:
    # In every API process, however it was started (API_WORKERS spawns them
    # afresh): the database waits of an API request are bounded.
    settings = get_settings()
    bound_waits(settings.api_statement_timeout_seconds, settings.api_lock_timeout_seconds)
    api_routes = [
        *datasets.routes,
        *version_parts.routes,
        *items.routes,
        *states.routes,
        *exchange.routes,
        *files.routes,
        *postprocessors.routes,
        *backfill.routes,
        *providers.routes,
        *system.api_routes,
        Route("/openapi.json", serve_openapi, methods=["GET"]),
        *docs.routes,
    ]
    return Starlette(
        routes=[*system.routes, *metrics.routes, Mount("/api/v1", routes=api_routes)],
        middleware=[Middleware(metrics.RequestMetrics)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )


app = create_app()

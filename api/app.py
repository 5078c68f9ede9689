"""The Starlette application."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.routing import Mount, Route

from api.openapi import serve_openapi
from api.problems import EXCEPTION_HANDLERS
from api.routes import (
    datasets,
    files,
    items,
    postprocessors,
    providers,
    system,
    version_parts,
)

log = logging.getLogger("itemflow.api")


def create_app() -> Starlette:
    api_routes = [
        *datasets.routes,
        *version_parts.routes,
        *items.routes,
        *files.routes,
        *postprocessors.routes,
        *providers.routes,
        *system.api_routes,
        Route("/openapi.json", serve_openapi, methods=["GET"]),
    ]
    return Starlette(
        routes=[*system.routes, Mount("/api/v1", routes=api_routes)],
        exception_handlers=EXCEPTION_HANDLERS,
    )


app = create_app()

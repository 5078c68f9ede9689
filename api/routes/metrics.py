"""GET /metrics, for Prometheus: open to loopback clients, and to others
only with the METRICS_TOKEN; and the middleware that times every request."""

from __future__ import annotations

import functools
import hmac
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from ipaddress import ip_address
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from api.http import Declaration, declare
from api.problems import problem
from shared import metrics
from shared.settings import get_settings


@declare(
    Declaration(
        public="Prometheus metrics, in its text format: loopback clients, or the METRICS_TOKEN",
        public_media_type="text/plain",
        errors=(401, 403),
    )
)
async def serve_metrics(request: Request) -> Response:
    if not _allowed(request):
        token = get_settings().metrics_token
        if not token:
            return problem(403, "/metrics answers loopback clients only; set METRICS_TOKEN.")
        return problem(401, "/metrics needs `Authorization: Bearer <METRICS_TOKEN>`.")
    # The jobs' count and the queues' lengths are read now: not in the loop.
    body = await run_in_threadpool(metrics.scrape)
    return Response(body, media_type=metrics.CONTENT_TYPE_LATEST)


# Set by proxies: a request that came through one is not this machine's own,
# whatever address the proxy (or uvicorn's reading of its headers) gives it.
FORWARDED = ("forwarded", "x-forwarded-for", "x-real-ip")


def _allowed(request: Request) -> bool:
    if _from_this_machine(request):
        return True
    token = get_settings().metrics_token
    given = request.headers.get("authorization", "")
    return bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def _from_this_machine(request: Request) -> bool:
    if any(name in request.headers for name in FORWARDED):
        return False
    try:
        address = ip_address(request.client.host if request.client else "")
    except ValueError:
        return False  # not an address (a test client's name): a token is needed
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return bool((mapped or address).is_loopback)


routes = [Route("/metrics", serve_metrics, methods=["GET"])]


# Any other method makes one series, not one each.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class RequestMetrics:
    """ASGI middleware: times each HTTP request, labelled by its route's
    template (never the raw path, whose ids would make a series each)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # The router sets the matched route in the scope, and each mount
            # its prefix in root_path; a mount left there matched no route in it.
            route = scope.get("route")
            template = "unmatched"
            if route is not None and not isinstance(route, Mount):
                template = _template(scope.get("root_path", ""), route.path)
            method = scope["method"] if scope["method"] in METHODS else "other"
            metrics.HTTP_DURATION.labels(template, method, str(status)).observe(
                time.perf_counter() - started
            )


@functools.lru_cache(maxsize=1024)
def _template(prefix: str, path: str) -> str:
    """`/api/v1/datasets/{dataset_id}` for the route `/datasets/{dataset_id:uuid}`
    under the mount `/api/v1`."""
    return prefix + re.sub(r"\{(\w+):\w+\}", r"{\1}", path)

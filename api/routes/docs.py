"""GET /api/v1/docs: the OpenAPI document rendered by Swagger UI, whose
files come from a PyPI package (swagger-ui-bundle-v2) and are served from
here: the page loads nothing from another host."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from api.http import Declaration, declare

# Paths relative to /api/v1/docs, so that the page works under any prefix a
# proxy puts in front.
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>itemflow API</title>
  <link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
  <link rel="stylesheet" href="docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/assets/swagger-ui-bundle.js"></script>
  <script src="docs/assets/swagger-ui-standalone-preset.js"></script>
  <script src="docs/init.js"></script>
</body>
</html>
"""
INIT = """window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout",
  deepLinking: true,
  persistAuthorization: true,
});
"""
# Only this host's scripts and styles (Swagger UI sets inline styles, and
# draws some images as data: URLs); the document's calls go to this API.
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)


@declare(Declaration(public="The API's documentation, an HTML page", public_media_type="text/html"))
async def docs_page(request: Request) -> Response:
    return HTMLResponse(PAGE, headers={"Content-Security-Policy": POLICY})


@declare(
    Declaration(
        public="The documentation page's start-up script", public_media_type="text/javascript"
    )
)
async def init_script(request: Request) -> Response:
    return Response(INIT, media_type="text/javascript")


routes = [
    # Without a trailing slash, so that its relative paths resolve in /api/v1.
    Route("/docs", docs_page, methods=["GET"]),
    Route("/docs/init.js", init_script, methods=["GET"]),
    Mount("/docs/assets", StaticFiles(directory=Path(swagger_ui_path)), name="docs-assets"),
]

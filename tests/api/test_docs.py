"""/api/v1/docs: the OpenAPI document rendered by Swagger UI from files this
API serves itself."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import httpx

from tests.builders import problem


def test_the_docs_page_loads_only_this_apis_files(api_url):
    page_url = api_url + "/api/v1/docs"
    page = httpx.get(page_url)

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    # The browser is told to load nothing from elsewhere, and nothing asks it to.
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'self'" in policy
    assert "http://" not in page.text and "https://" not in page.text
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert {"docs/assets/swagger-ui-bundle.js", "docs/init.js"} <= set(sources)
    for source in sources:
        asset = httpx.get(urljoin(page_url, source))
        assert asset.status_code == 200, source
        assert len(asset.content) > 100, source
    bundle = httpx.get(urljoin(page_url, "docs/assets/swagger-ui-bundle.js"))
    assert "javascript" in bundle.headers["content-type"]
    assert b"SwaggerUIBundle" in bundle.content
    # The start-up script asks for this API's document, by a relative path.
    init = httpx.get(urljoin(page_url, "docs/init.js")).text
    document_url = urljoin(page_url, re.search(r'url: "([^"]+)"', init)[1])
    assert document_url == api_url + "/api/v1/openapi.json"
    assert httpx.get(document_url).json()["openapi"].startswith("3.1")


def test_a_missing_asset_is_404(api_url):
    problem(httpx.get(api_url + "/api/v1/docs/assets/no-such-file.js"), 404)

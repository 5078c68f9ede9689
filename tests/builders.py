"""Builders for what tests need, over the HTTP API."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
from PIL import Image, ImageDraw, ImageFont


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    return response.json()


def make_dataset(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    return ok(client.post("/datasets", json={"name": "a dataset", **fields}), 201)


def first_version(dataset: dict[str, Any]) -> dict[str, Any]:
    version: dict[str, Any] = dataset["versions"][0]
    return version


def version_path(dataset: dict[str, Any]) -> str:
    return f"/datasets/{dataset['id']}/versions/{first_version(dataset)['id']}"


def make_item(client: httpx.Client, dataset: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return ok(
        client.post(version_path(dataset) + "/items", json={"name": "an item", **fields}), 201
    )


def make_post_processor(
    client: httpx.Client, dataset: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    body = {"name": "ocr", "model_type": "ocr", **fields}
    return ok(client.post(f"/datasets/{dataset['id']}/post-processors", json=body), 201)


def item_path(dataset: dict[str, Any], item: dict[str, Any]) -> str:
    return f"{version_path(dataset)}/items/{item['id']}"


def upload(
    client: httpx.Client,
    dataset: dict[str, Any],
    item: dict[str, Any],
    content: bytes,
    name: str = "file.bin",
) -> httpx.Response:
    return client.post(item_path(dataset, item) + "/upload", files={"file": (name, content)})


def png_with_words(words: str, size: tuple[int, int] = (900, 200)) -> bytes:
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text((20, 60), words, fill="black", font=ImageFont.load_default(size=64))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def wait_for_jobs(
    client: httpx.Client,
    dataset: dict[str, Any],
    item: dict[str, Any],
    done: tuple[str, ...] = ("completed", "failed"),
    timeout: float = 60,
) -> list[dict[str, Any]]:
    """Poll the item's jobs until every one is in a `done` state."""
    deadline = time.monotonic() + timeout
    while True:
        jobs: list[dict[str, Any]] = ok(client.get(item_path(dataset, item) + "/jobs"))
        if jobs and all(job["status"] in done for job in jobs):
            return jobs
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs not done after {timeout}s: {jobs}")
        time.sleep(0.2)

"""Builders for what tests need, over the HTTP API."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import av
import httpx
import numpy
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


def m4a(
    path: Path, samples: Any, rate: int, bit_rate: int = 64_000, faststart: bool = False
) -> Path:
    """Encode float32 `samples` (1-D mono, or frames x channels) as AAC in
    an m4a file, as iTunes and phones write it (brand "M4A ")."""
    planar = numpy.ascontiguousarray(numpy.atleast_2d(samples.T), dtype="float32")
    layout = "mono" if planar.shape[0] == 1 else "stereo"
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", format="ipod", options=options) as container:
        stream = container.add_stream("aac", rate=rate, layout=layout)
        stream.bit_rate = bit_rate
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


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


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The RFC 9457 problem body of an error answer, checked for its shape."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    media_type = response.headers.get("content-type", "")
    assert media_type.startswith("application/problem+json"), media_type
    body: dict[str, Any] = response.json()
    assert body["status"] == status, body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["detail"], str), body
    if status == 422:
        assert body["errors"], body
        for error in body["errors"]:
            assert isinstance(error["loc"], list) and isinstance(error["msg"], str), error
    assert "Traceback" not in response.text, response.text
    return body


def error_locs(body: dict[str, Any]) -> list[list[Any]]:
    return [error["loc"] for error in body["errors"]]


def make_split(client: httpx.Client, dataset: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {"name": "a split", **fields}
    return ok(client.post(version_path(dataset) + "/splits", json=body), 201)


def make_label(client: httpx.Client, dataset: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {"name": "a label", **fields}
    return ok(client.post(version_path(dataset) + "/labels", json=body), 201)


def make_annotation(
    client: httpx.Client,
    dataset: dict[str, Any],
    label: dict[str, Any],
    item: dict[str, Any],
    **fields: Any,
) -> dict[str, Any]:
    body = {"label_id": label["id"], "item_id": item["id"], **fields}
    return ok(client.post(version_path(dataset) + "/annotations", json=body), 201)


def make_quick_post_processor(
    client: httpx.Client, dataset: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    """A post-processor served by the test model that always succeeds and
    predicts nothing: its jobs go pending -> processing -> completed, never
    fail, leave the item as it was, and cost nothing should a worker run them."""
    body = {
        "model_type": "classification",
        "model_id": "test-flaky",
        "output_target": "annotations",
        **fields,
    }
    return make_post_processor(client, dataset, **body)


def stored_files() -> set[str]:
    """The keys in the API's file storage (the API runs in this process)."""
    from shared.settings import get_settings

    files_dir = get_settings().files_dir
    return {path.name for path in files_dir.iterdir()} if files_dir.exists() else set()


def find_nulls(value: Any, allowed: frozenset[str] = frozenset(), where: str = "") -> list[str]:
    """Where `value` holds a null outside the keys named in `allowed`."""
    if isinstance(value, dict):
        return [
            found
            for key, child in value.items()
            if not (child is None and key in allowed)
            for found in find_nulls(child, allowed, f"{where}.{key}")
        ]
    if isinstance(value, list):
        return [
            found
            for index, child in enumerate(value)
            for found in find_nulls(child, allowed, f"{where}[{index}]")
        ]
    return [where or "."] if value is None else []


def timestamps(value: Any) -> list[str]:
    """Every non-null value of a key ending in `_at`, however deep."""
    if isinstance(value, dict):
        return [
            found
            for key, child in value.items()
            for found in (
                [child] if key.endswith("_at") and isinstance(child, str) else timestamps(child)
            )
        ]
    if isinstance(value, list):
        return [found for child in value for found in timestamps(child)]
    return []


def one_of_everything(client: httpx.Client) -> dict[str, str]:
    """One of each row, owned by the client's user, by the path parameter
    that names it: a dataset with a version, a split, a label, an item in
    the split with a file, an annotation, a post-processor and so a job."""
    dataset = make_dataset(client)
    version = first_version(dataset)
    base = version_path(dataset)
    split = ok(client.post(base + "/splits", json={"name": "train"}), 201)
    label = ok(client.post(base + "/labels", json={"name": "cat"}), 201)
    post_processor = ok(
        client.post(f"/datasets/{dataset['id']}/post-processors", json={"model_type": "ner"}),
        201,
    )
    item = make_item(client, dataset, splits=[{"id": split["id"]}])
    ok(upload(client, dataset, item, b"Ada Lovelace lived in London.", "note.txt"))
    annotation = ok(
        client.post(
            base + "/annotations",
            json={"label_id": label["id"], "item_id": item["id"], "split_id": split["id"]},
        ),
        201,
    )
    jobs = ok(client.get(item_path(dataset, item) + "/jobs"))
    return {
        "dataset_id": dataset["id"],
        "version_id": version["id"],
        "split_id": split["id"],
        "row_id": split["id"],
        "label_id": label["id"],
        "item_id": item["id"],
        "annotation_id": annotation["id"],
        "post_processor_id": post_processor["id"],
        "job_id": jobs[0]["id"],
        # Not a row: one of the operator's providers, shared by every user.
        "provider": "openai",
    }


def scrape_metrics(api_url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The API's /metrics, asked from loopback: its samples by name, each
    as (labels, value)."""
    from prometheus_client.parser import text_string_to_metric_families

    answer = httpx.get(api_url + "/metrics", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found

"""The whole system as a user runs it: `itemflow` commands as processes, a
scanned page uploaded over HTTP, its words read by OCR, and the task in
Flower."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from tests.builders import (
    item_path,
    make_dataset,
    make_item,
    make_post_processor,
    ok,
    png_with_words,
    upload,
    wait_for_jobs,
)
from tests.conftest import BACKEND, VAR_DIR
from tests.fixtures import free_port, itemflow, spawn, stop, wait_for_http, wait_for_worker

FLOWER_AUTH = ("operator", "s3cret-flower")


@pytest.fixture(scope="module")
def system():
    """API, worker and Flower as processes, on a broker of their own so that
    only this worker can run the job."""
    api_port, flower_port = free_port(), free_port()
    env = {
        "API_PORT": str(api_port),
        "FLOWER_PORT": str(flower_port),
        "FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH),
        "POST_PROCESSORS": "",
    }
    if BACKEND == "services":
        env["QUEUE_NAME"] = os.environ["QUEUE_NAME"] + "-e2e"
    else:
        env["VAR_DIR"] = str(VAR_DIR / "e2e")
    itemflow("migrate", env=env)
    key = itemflow("users", "create", f"e2e-{os.urandom(4).hex()}", env=env).strip()
    processes = {
        name: spawn(name, log_name=f"e2e-{name}", **env) for name in ("api", "worker", "flower")
    }
    try:
        wait_for_worker(processes["worker"], "e2e-worker")
        wait_for_http(f"http://127.0.0.1:{api_port}/healthz")
        wait_for_http(f"http://127.0.0.1:{flower_port}/healthcheck")
        yield {
            "api": f"http://127.0.0.1:{api_port}/api/v1",
            "flower": f"http://127.0.0.1:{flower_port}",
            "key": key,
        }
    finally:
        for process in processes.values():
            stop(process)


def test_a_scanned_page_is_read_into_the_item_text(system):
    headers = {"Authorization": f"Bearer {system['key']}"}
    with httpx.Client(base_url=system["api"], headers=headers, timeout=30) as client:
        assert ok(client.get(system["api"].removesuffix("/api/v1") + "/readyz"))["status"] == "ok"
        dataset = make_dataset(client, name="scans")
        make_post_processor(client, dataset, name="page text")
        item = make_item(client, dataset, name="receipt")
        ok(upload(client, dataset, item, png_with_words("PAID 4711 EUR"), "receipt.png"))

        [job] = wait_for_jobs(client, dataset, item, timeout=90)

        assert job["status"] == "completed", job
        assert job["attempts"] == 1
        assert ok(client.get(item_path(dataset, item)))["text"] == "PAID 4711 EUR"

    # Flower lists the task by name, with the job, item and post-processor.
    assert httpx.get(system["flower"] + "/api/tasks", timeout=10).status_code == 401
    deadline = time.monotonic() + 20
    while True:
        tasks = httpx.get(system["flower"] + "/api/tasks", auth=FLOWER_AUTH, timeout=10).json()
        mine = [task for task in tasks.values() if job["id"] in (task.get("kwargs") or "")]
        if mine and mine[0].get("state") == "SUCCESS" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert mine, tasks
    assert mine[0]["name"] == "itemflow.run_post_processor"
    assert item["id"] in mine[0]["kwargs"]
    assert "page text" in mine[0]["kwargs"]
    assert mine[0]["state"] == "SUCCESS"

"""The whole system as a user runs it: `itemflow` commands as processes, a
scanned page uploaded over HTTP, its words read by OCR, and the task in
Flower."""

from __future__ import annotations

import json
import os
import time
from typing import Any

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
        # The packaged models, and one that fails as asked.
        "POST_PROCESSORS": "tests.plugins:FlakyModel",
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

    def restart_flower() -> None:
        stop(processes["flower"])
        processes["flower"] = spawn("flower", log_name="e2e-flower", **env)
        wait_for_http(f"http://127.0.0.1:{flower_port}/healthcheck")

    try:
        wait_for_worker(processes["worker"], "e2e-worker")
        wait_for_http(f"http://127.0.0.1:{api_port}/healthz")
        wait_for_http(f"http://127.0.0.1:{flower_port}/healthcheck")
        yield {
            "api": f"http://127.0.0.1:{api_port}/api/v1",
            "flower": f"http://127.0.0.1:{flower_port}",
            "key": key,
            "restart_flower": restart_flower,
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


def flower_tasks(system, job_id: str, settled: Any, timeout: float = 20) -> list[dict[str, Any]]:
    """Flower's tasks of a job, oldest first, once `settled(tasks)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = httpx.get(system["flower"] + "/api/tasks", auth=FLOWER_AUTH, timeout=10).json()
        mine = sorted(
            (task for task in tasks.values() if job_id in (task.get("kwargs") or "")),
            key=lambda task: task.get("received") or 0,
        )
        if settled(mine) or time.monotonic() > deadline:
            return mine
        time.sleep(0.5)


def test_flower_shows_each_task_as_its_jobs_outcome(system):
    headers = {"Authorization": f"Bearer {system['key']}"}
    with httpx.Client(base_url=system["api"], headers=headers, timeout=30) as client:
        dataset = make_dataset(client, name="truth")
        make_post_processor(client, dataset, name="page text")
        make_post_processor(
            client, dataset, name="flaky once", model_type="classification",
            model_id="test-flaky", prompt=json.dumps({"fail_times": 1}),
        )  # fmt: skip
        item = make_item(client, dataset, name="corrupt scan")
        ok(upload(client, dataset, item, b"\x89PNG\r\n\x1a\n not a picture", "scan.png"))
        jobs = {job["post_processor_name"]: job for job in wait_for_jobs(client, dataset, item)}

    failed, flaky = jobs["page text"], jobs["flaky once"]
    assert (failed["status"], failed["attempts"]) == ("failed", 1), failed
    assert (flaky["status"], flaky["attempts"]) == ("completed", 2), flaky

    # Failed for good: FAILURE, with the attempt and the job's error.
    [task] = flower_tasks(system, failed["id"], lambda t: t and t[0]["state"] == "FAILURE")
    assert task["state"] == "FAILURE", task
    assert "attempt 1: " in task["exception"] and failed["error"][:40] in task["exception"]
    assert dataset["id"] in task["kwargs"] and item["id"] in task["kwargs"]
    # Failed once and sent again: RETRY, then the run that completed SUCCESS.
    runs = flower_tasks(system, flaky["id"], lambda t: [r["state"] for r in t][-1:] == ["SUCCESS"])
    assert [run["state"] for run in runs] == ["RETRY", "SUCCESS"], runs
    assert "flaky failure number 1" in runs[0]["exception"]
    assert "completed (attempt 2)" in runs[1]["result"]


def test_flower_keeps_its_history_across_its_restarts(system):
    headers = {"Authorization": f"Bearer {system['key']}"}
    with httpx.Client(base_url=system["api"], headers=headers, timeout=30) as client:
        dataset = make_dataset(client, name="history")
        make_post_processor(
            client, dataset, name="quick", model_type="classification", model_id="test-flaky"
        )
        item = make_item(client, dataset)
        ok(upload(client, dataset, item, b"some text"))
        [job] = wait_for_jobs(client, dataset, item)
    before = flower_tasks(system, job["id"], lambda t: t and t[0]["state"] == "SUCCESS")
    assert [task["state"] for task in before] == ["SUCCESS"]

    system["restart_flower"]()

    after = flower_tasks(system, job["id"], lambda t: bool(t), timeout=5)
    assert [(task["uuid"], task["state"]) for task in after] == [(before[0]["uuid"], "SUCCESS")]

"""A soak: many uploads across 4 workers, with a post-processor that fails
transiently at random 30% of its runs. Every job must end `completed` or
`failed` as its attempts allow, and the counts must add up exactly: the
jobs, the items' job counts and texts, and the runs the model itself wrote
down.

SOAK_UPLOADS sets the number of uploads: 300 in the suite, to keep it
quick; `SOAK_UPLOADS=10000` runs the full soak (see the README).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.builders import make_dataset, make_item, make_post_processor, ok, upload, version_path
from tests.conftest import VAR_DIR
from tests.faults.plugins import runs_file
from tests.faults.stack import own_broker, running_api
from tests.fixtures import spawn, stop, wait_for_worker, wait_until

UPLOADS = int(os.environ.get("SOAK_UPLOADS", "300"))
WORKERS = 4
FAILURE_RATE = 0.3
MAX_ATTEMPTS = 3
ENV = {
    "POST_PROCESSORS": os.environ["POST_PROCESSORS"] + ",tests.faults.plugins:UnreliableModel",
    "JOB_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    "WORKER_CONCURRENCY": "1",
    "PRELOAD_MODELS": "false",
}
ENV.update(own_broker("soak"))


@pytest.fixture(scope="module")
def api() -> Iterator[httpx.Client]:
    """The API, 4 workers and the reaper, as `itemflow up` would run them."""
    workers = [
        spawn("worker", f"--name=soak-{index}@%h", log_name=f"soak-worker-{index}", **ENV)
        for index in range(WORKERS)
    ]
    try:
        with running_api(ENV, "soak", timeout=60) as client:
            for index, worker in enumerate(workers):
                wait_for_worker(worker, f"soak-worker-{index}")
            yield client
    finally:
        for worker in workers:
            stop(worker)


def everything(client: httpx.Client, path: str) -> list[dict[str, Any]]:
    """Every row of a paged list."""
    rows: list[dict[str, Any]] = []
    while True:
        response = client.get(path, params={"page_size": 1000, "page_count": len(rows) // 1000})
        page = ok(response)
        rows += page
        if len(rows) >= int(response.headers["X-Total-Count"]) or not page:
            return rows


def count(client: httpx.Client, dataset: dict[str, Any], status: str) -> int:
    response = client.get(
        f"/datasets/{dataset['id']}/post-processors/jobs",
        params={"status": status, "page_size": 1},
    )
    ok(response)
    return int(response.headers["X-Total-Count"])


def unreliable(client: httpx.Client, dataset: dict[str, Any]) -> dict[str, Any]:
    """A post-processor on the unreliable test model: a FAILURE_RATE of its runs fail."""
    return make_post_processor(
        client,
        dataset,
        name="unreliable",
        model_type="classification",
        model_id="test-unreliable",
        output_target="text",
        prompt=json.dumps({"failure_rate": FAILURE_RATE}),
    )


def test_uploads_across_four_workers_with_random_transient_failures_all_add_up(api):
    dataset = make_dataset(api)
    post_processor = unreliable(api, dataset)

    def new_upload(index: int) -> str:
        item = make_item(api, dataset, name=f"item-{index}")
        ok(upload(api, dataset, item, f"text {index}\n".encode(), "a.txt"))
        return str(item["id"])

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        uploaded = list(pool.map(new_upload, range(UPLOADS)))
    upload_seconds = time.monotonic() - started
    wait_until(
        lambda: count(api, dataset, "completed") + count(api, dataset, "failed") == UPLOADS,
        60 + UPLOADS * 0.2,
        f"all {UPLOADS} jobs ended",
    )
    seconds = time.monotonic() - started

    jobs = everything(api, f"/datasets/{dataset['id']}/post-processors/jobs")
    items = everything(api, version_path(dataset) + "/items")
    runs: dict[str, list[str]] = defaultdict(list)
    for line in runs_file(post_processor["id"]).read_text().splitlines():
        item_id, outcome = line.split()
        runs[item_id].append(outcome)

    # One job per upload, each ended.
    assert sorted(job["dataset_item_id"] for job in jobs) == sorted(uploaded)
    statuses = Counter(job["status"] for job in jobs)
    assert set(statuses) <= {"completed", "failed"}, statuses
    # Each job's attempts are the model's runs for its item, no more, no
    # fewer: a completed job ran until its first success, a failed one
    # failed every one of its attempts.
    for job in jobs:
        outcomes = runs[job["dataset_item_id"]]
        assert len(outcomes) == job["attempts"], (job, outcomes)
        if job["status"] == "completed":
            assert outcomes == ["failed"] * (job["attempts"] - 1) + ["ok"], (job, outcomes)
            assert job["error"] is None
        else:
            assert outcomes == ["failed"] * MAX_ATTEMPTS, (job, outcomes)
            assert job["error"] == "a random transient failure"
    assert sum(len(outcomes) for outcomes in runs.values()) == sum(j["attempts"] for j in jobs)
    assert set(runs) == set(uploaded)
    # The items agree: their job counts, and the text of the completed ones.
    completed = {job["dataset_item_id"] for job in jobs if job["status"] == "completed"}
    for item in items:
        done = item["id"] in completed
        assert item["job_status"] == {
            "pending": 0,
            "processing": 0,
            "completed": int(done),
            "failed": int(not done),
            "total": 1,
        }, item
        assert item["text"] == (f"done {item['name']}" if done else ""), item
    assert len(items) == UPLOADS

    attempts = Counter(job["attempts"] for job in jobs if job["status"] == "completed")
    served = [
        (VAR_DIR / f"soak-worker-{index}.log").read_text().count("event=job.started")
        for index in range(WORKERS)
    ]
    print(
        f"\n{UPLOADS} uploads in {upload_seconds:.1f} s; all jobs ended {seconds:.1f} s after"
        f" the first upload. completed {statuses['completed']} (by attempt:"
        f" {dict(sorted(attempts.items()))}), failed {statuses['failed']} (expected about"
        f" {UPLOADS * FAILURE_RATE**MAX_ATTEMPTS:.0f}); {sum(served)} runs, per worker {served}"
    )
    assert all(served), served  # every worker took part

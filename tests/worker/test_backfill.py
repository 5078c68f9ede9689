"""A post-processor added to a dataset that holds items already, run over
them from the CLI by a real worker."""

from __future__ import annotations

import json
import time

import pytest

from tests.builders import make_dataset, make_quick_post_processor, ok, version_path
from tests.fixtures import itemflow

pytestmark = pytest.mark.usefixtures("worker")

ITEMS = 1000


def test_a_post_processor_added_later_runs_once_over_each_item(client, api_url):
    dataset = make_dataset(client)
    for n in range(ITEMS):
        ok(client.post(version_path(dataset) + "/items", json={"name": f"i{n}", "text": "x"}), 201)
    post_processor = make_quick_post_processor(client, dataset, name="added later")
    key = client.headers["Authorization"].removeprefix("Bearer ")
    run_path = f"/datasets/{dataset['id']}/post-processors/{post_processor['id']}/run"
    jobs_path = f"/datasets/{dataset['id']}/post-processors/jobs"

    done = itemflow(
        "jobs", "run", "--url", api_url, "--api-key", key,
        "--dataset", dataset["id"], "--post-processor", post_processor["id"],
    )  # fmt: skip
    # At once, while the worker runs them: the items with a live job are
    # skipped, those done are not picked.
    beside = ok(client.post(run_path, json={"items": "without_completed"}))

    assert done == f"created {ITEMS}, skipped 0\n"
    assert beside["created"] == 0
    deadline = time.monotonic() + 120
    while True:
        summary = ok(client.get(jobs_path + "/summary"))["post_processors"][0]["counts"]
        if summary["completed"] == ITEMS or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert summary == {
        "pending": 0,
        "processing": 0,
        "completed": ITEMS,
        "failed": 0,
        "total": ITEMS,
    }
    jobs = ok(client.get(jobs_path, params={"page_size": ITEMS}))
    assert len({job["dataset_item_id"] for job in jobs}) == ITEMS
    # Each ran once: the test model counts its runs of a job.
    assert {(job["attempts"], json.loads(job["result"])["runs"]) for job in jobs} == {(1, 1)}
    again = ok(client.post(run_path, json={"items": "without_completed"}))
    assert again == {"created": 0, "skipped": 0, "next": "", "remaining": 0}

"""A claim whose commit went through but whose answer was lost with the
connection: the worker cannot know it holds the job. Its message is sent
again naming that run, and the next delivery takes the claim over without
counting another attempt, instead of leaving the job to its lease."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.builders import make_dataset, make_item, make_post_processor, ok, upload
from tests.conftest import BACKEND, VAR_DIR
from tests.faults.pg_proxy import CommitEater, commit_eater
from tests.faults.stack import own_broker, running_api, started_workers, wait_for_status

pytestmark = pytest.mark.skipif(
    BACKEND != "services",
    reason="a commit's answer lost on the wire is a database server's (SQLite has no wire)",
)

ENV = {
    "POST_PROCESSORS": os.environ["POST_PROCESSORS"] + ",tests.faults.plugins:StallingModel",
    "REAPER_INTERVAL_SECONDS": "0.5",
    "WORKER_CONCURRENCY": "1",
    "PRELOAD_MODELS": "false",
    **own_broker("lost-commit"),
}


@pytest.fixture(scope="module")
def api() -> Iterator[httpx.Client]:
    with running_api(ENV, "lost-commit") as client:
        yield client


@pytest.fixture
def proxy() -> Iterator[CommitEater]:
    url = make_url(os.environ["DATABASE_URL"])
    with commit_eater(url.host or "127.0.0.1", url.port or 5432) as eater:
        yield eater


@pytest.fixture
def worker(proxy: CommitEater) -> Iterator[Any]:
    """A worker that reaches the database through the proxy, with a lease
    as long as a user's: the reaper would take the job back after a minute."""
    url = make_url(os.environ["DATABASE_URL"]).set(
        host="127.0.0.1", port=proxy.port, query={"sslmode": "disable"}
    )
    env = {**ENV, "DATABASE_URL": url.render_as_string(hide_password=False)}
    with started_workers(env, "lost-commit") as start:
        yield start("a")


def test_a_claim_committed_without_its_answer_costs_no_attempt(api, proxy, worker):
    dataset = make_dataset(api)
    make_post_processor(
        api,
        dataset,
        name="quick",
        model_type="classification",
        model_id="test-stall",
        output_target="annotations",
        auto_create_labels=True,
        prompt=json.dumps({"sleep": 0, "labels": {"cat": 0.9}}),
    )
    item = make_item(api, dataset)

    proxy.armed.set()
    ok(upload(api, dataset, item, b"some text\n", "a.txt"))
    job = wait_for_status(api, dataset, item, "completed", timeout=20)

    assert proxy.eaten == 1
    assert job["attempts"] == 1, job
    # The model ran once: the lost claim's delivery never reached it.
    assert json.loads(job["result"])["runs"] == 1
    log = (VAR_DIR / "lost-commit-worker-a.log").read_text()
    assert "retry: Retry in 2.0s: OperationalError" in log, log[-3000:]
    assert "event=job.skipped" not in log
    assert "event=job.attempt_abandoned" not in (VAR_DIR / "lost-commit-reaper.log").read_text()

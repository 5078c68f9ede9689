"""A transient failure's back-off, on the run's broker: the next attempt
starts no sooner than the back-off says. On RabbitMQ the waiting message
is kept by the broker (Celery's native delayed delivery), not by a worker,
so a worker killed during the back-off loses nothing. Real processes: the
API and workers on a queue (or, embedded, a var dir) of their own; no
reaper, so that nothing else could send the job again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.builders import make_dataset, make_item, make_post_processor, ok, upload
from tests.conftest import BACKEND, BROKER, VAR_DIR
from tests.faults.stack import (
    children_of,
    own_broker,
    running_api,
    started_workers,
    the_job,
    wait_for_status,
)
from tests.fixtures import wait_until

BACK_OFF = 2.5
ENV = {
    "RETRY_BACKOFF_SECONDS": str(BACK_OFF),
    "RETRY_BACKOFF_MAX_SECONDS": str(BACK_OFF),
    "WORKER_CONCURRENCY": "1",
    "PRELOAD_MODELS": "false",
    **own_broker("back-off"),
}
ON_RABBITMQ = BACKEND == "services" and BROKER == "RabbitMQ"


@pytest.fixture(scope="module")
def api() -> Iterator[httpx.Client]:
    with running_api(ENV, "back-off", reaper=False) as client:
        yield client


@pytest.fixture
def workers() -> Iterator[Any]:
    with started_workers(ENV, "back-off") as start:
        yield start


def failing_once(client: httpx.Client) -> tuple[dict[str, Any], dict[str, Any]]:
    """An item whose job fails transiently on its first attempt."""
    dataset = make_dataset(client)
    make_post_processor(
        client,
        dataset,
        name="flaky",
        model_type="classification",
        model_id="test-flaky",
        prompt=json.dumps({"fail_times": 1}),
    )
    item = make_item(client, dataset)
    ok(upload(client, dataset, item, b"some text\n", "a.txt"))
    return dataset, item


def backing_off(client: httpx.Client, dataset: dict[str, Any], item: dict[str, Any]) -> datetime:
    """When the first attempt failed: its job back to pending, its back-off begun."""
    job = wait_until(
        lambda: (
            (job := the_job(client, dataset, item))["attempts"] == 1
            and job["status"] == "pending"
            and job
        ),
        20,
        "the first attempt failed",
    )
    assert job["error"] == "flaky failure number 1", job
    return datetime.fromisoformat(job["updated_at"])


def waited(job: dict[str, Any], failed_at: datetime) -> float:
    """From the first attempt's failure to the second's start."""
    return (datetime.fromisoformat(job["started_at"]) - failed_at).total_seconds()


def test_a_transient_failure_waits_its_back_off_before_the_next_attempt(api, workers):
    workers("a")
    dataset, item = failing_once(api)
    failed_at = backing_off(api, dataset, item)

    job = wait_for_status(api, dataset, item, "completed", timeout=BACK_OFF + 15)

    print(
        f"\nback-off {BACK_OFF} s on {BROKER if BACKEND == 'services' else BACKEND}: "
        f"the next attempt started {waited(job, failed_at):.2f} s after the failure"
    )
    assert job["attempts"] == 2, job
    assert BACK_OFF <= waited(job, failed_at) < BACK_OFF + 5
    if ON_RABBITMQ:
        # Celery's delay queues and bindings are all in place.
        assert "delayed delivery" not in (VAR_DIR / "back-off-worker-a.log").read_text()


@pytest.mark.skipif(
    not ON_RABBITMQ,
    reason="on Redis and the filesystem broker the worker holds a delayed message "
    "itself: killed, it loses it (to Redis's visibility timeout, or for good) until "
    "the reaper's sweep of quiet jobs sends it again",
)
def test_a_back_off_outlives_the_worker_killed_during_it(api, workers):
    first = workers("b1")
    dataset, item = failing_once(api)
    failed_at = backing_off(api, dataset, item)

    # Once the failed attempt's message is acknowledged: killed before, the
    # worker would lose that message to the next worker at once, which
    # would find the job pending and start it early (the back-off is the
    # delayed message's; the job itself does not say when it may run).
    log = VAR_DIR / "back-off-worker-b1.log"
    wait_until(lambda: "succeeded in" in log.read_text(), 10, "the attempt's task ended")
    time.sleep(0.5)
    # The delayed message waits in RabbitMQ: nothing is lost with the worker.
    pool = children_of(first.pid)
    for pid in (first.pid, *pool):  # the main process first: it starts no new ones
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    first.wait(timeout=10)
    workers("b2")
    job = wait_for_status(api, dataset, item, "completed", timeout=BACK_OFF + 20)

    print(
        f"\nworker SIGKILLed in a {BACK_OFF} s back-off on RabbitMQ: the next attempt "
        f"started {waited(job, failed_at):.2f} s after the failure, on a new worker"
    )
    assert job["attempts"] == 2, job
    assert waited(job, failed_at) >= BACK_OFF

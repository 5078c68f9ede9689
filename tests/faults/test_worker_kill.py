"""Workers killed mid-job: the job is taken back once its lease runs out
and completes exactly once. Real processes throughout: the API, Celery
workers and the reaper, on a queue (or, embedded, a var dir) of their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.services.retries import RetryPolicy
from shared.settings import Settings
from tests.builders import (
    item_path,
    make_dataset,
    make_item,
    make_post_processor,
    ok,
    upload,
    version_path,
)
from tests.conftest import VAR_DIR
from tests.faults.plugins import pid_file
from tests.faults.stack import (
    LEASE_SECONDS,
    LEASES,
    children_of,
    own_broker,
    running_api,
    started_workers,
    the_job,
    wait_for_status,
)
from tests.fixtures import wait_until

GRACE_SECONDS = 2
ENV = {
    "POST_PROCESSORS": os.environ["POST_PROCESSORS"]
    + ",tests.faults.plugins:StallingModel,tests.faults.plugins:CrashingModel",
    **LEASES,
    "WORKER_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
    # One job at a time: after a kill, only the replacement process can
    # serve the next job. No models to load: only the test model runs.
    "WORKER_CONCURRENCY": "1",
    "PRELOAD_MODELS": "false",
}
ENV.update(own_broker("faults"))
# The settings a user gets: a job lost with its worker is back after a minute.
DEFAULT_LEASES = {
    name: str(Settings.model_fields[name.lower()].default)
    for name in ("JOB_LEASE_SECONDS", "JOB_HEARTBEAT_SECONDS")
}


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # gone already
        os.kill(pid, signal.SIGKILL)


def kill_worker(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a worker's main process and every pool process, main first
    so that it cannot start new ones. (Not by process group: spawn() leaves
    the worker in the test run's group.)"""
    children = children_of(process.pid)
    kill(process.pid)
    for child in children:
        kill(child)
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def api() -> Iterator[httpx.Client]:
    """The API and the reaper as processes, and a client for a new user."""
    with running_api(ENV, "faults") as client:
        yield client


@pytest.fixture
def workers() -> Iterator[Any]:
    """Start workers with `workers(name)`; all are gone after the test."""
    with started_workers(ENV, "faults", end=end_worker) as start:
        yield start


def end_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        # A stalled job would hold up a warm shutdown.
        kill_worker(process)


def stalling(client: httpx.Client, sleep: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """A dataset whose post-processor stalls on its first run per item, and
    writes its predictions as annotations, creating the labels."""
    dataset = make_dataset(client)
    post_processor = make_post_processor(
        client,
        dataset,
        name="stalling",
        model_type="classification",
        model_id="test-stall",
        output_target="annotations",
        auto_create_labels=True,
        prompt=json.dumps({"sleep": sleep, "labels": {"cat": 0.9, "dog": 0.8}}),
    )
    return dataset, post_processor


def uploaded_item(client: httpx.Client, dataset: dict[str, Any]) -> dict[str, Any]:
    item = make_item(client, dataset)
    ok(upload(client, dataset, item, b"some text\n", "a.txt"))
    return item


def failing_item(
    client: httpx.Client, name: str, model_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A dataset on the failing test model `model_id`, and an item uploaded to it."""
    dataset = make_dataset(client)
    make_post_processor(client, dataset, name=name, model_type="classification", model_id=model_id)
    return dataset, uploaded_item(client, dataset)


def stays_processing(client, dataset, item, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = the_job(client, dataset, item)
        assert (job["status"], job["attempts"]) == ("processing", 1), job
        time.sleep(0.1)


def running_pid(post_processor: dict[str, Any], item: dict[str, Any]) -> int:
    path = pid_file(post_processor["id"], item["id"])
    wait_until(path.exists, 15, "the stalling model started")
    return int(path.read_text())


def assert_completed_once(client, dataset, item, job) -> None:
    """Completed by the second attempt (the first was lost with its
    process), its predictions written once."""
    assert (job["status"], job["attempts"]) == ("completed", 2), job
    # The model ran twice: the lost run and the one that counted.
    assert_written_once(client, dataset, item, job, runs=2)


def assert_written_once(client, dataset, item, job, runs: int) -> None:
    assert json.loads(job["result"])["runs"] == runs, job
    labels = ok(client.get(version_path(dataset) + "/labels"))
    names = {label["id"]: label["name"] for label in labels}
    annotations = ok(client.get(item_path(dataset, item)))["annotations"]
    assert sorted(names[a["label_id"]] for a in annotations) == ["cat", "dog"]
    assert sorted(names.values()) == ["cat", "dog"]


def test_killed_pool_processes_lose_one_attempt_and_the_job_is_back_in_seconds(api, workers):
    """Every pool process of a worker SIGKILLed mid-job (the OOM killer, a
    crash in a model): the worker's main process takes the job back at
    once, long before its lease (the default, a minute) would run out."""
    worker = workers("a", **DEFAULT_LEASES, WORKER_CONCURRENCY="2")
    dataset, post_processor = stalling(api, sleep=30)
    item = uploaded_item(api, dataset)
    pid = running_pid(post_processor, item)
    pool = children_of(worker.pid)
    assert pid in pool and len(pool) == 2
    # Alive, its process holds the job.
    stays_processing(api, dataset, item, 1.5)

    for child in pool:
        kill(child)
    killed = time.monotonic()
    job = wait_for_status(api, dataset, item, "completed", timeout=30)
    delay = time.monotonic() - killed

    backoff = RetryPolicy.from_settings(Settings()).backoff(1)
    print(
        f"\nevery pool process SIGKILLed -> job completed: {delay:.1f} s (back-off {backoff:g} s)"
    )
    assert delay < 5 + backoff
    assert_completed_once(api, dataset, item, job)
    # Taken back by the worker, not by the reaper at the end of the lease.
    taken_back = f"event=job.attempt_abandoned job_id={job['id']}"
    assert taken_back in worker_log("a")
    assert "Attempt 1 was lost: its process died (signal 9" in worker_log("a")
    assert taken_back not in (VAR_DIR / "faults-reaper.log").read_text()
    # The worker lives on, its new pool processes serve the next job.
    assert worker.poll() is None
    quick, _ = stalling(api, sleep=0)
    other = uploaded_item(api, quick)
    done = wait_for_status(api, quick, other, "completed", timeout=15)
    assert done["attempts"] == 1


def worker_log(name: str) -> str:
    return (VAR_DIR / f"faults-worker-{name}.log").read_text()


def test_a_killed_worker_loses_its_job_to_the_next_worker(api, workers):
    first = workers("b1")
    dataset, post_processor = stalling(api, sleep=30)
    item = uploaded_item(api, dataset)
    running_pid(post_processor, item)

    kill_worker(first)
    killed = time.monotonic()
    workers("b2")
    job = wait_for_status(api, dataset, item, "completed", timeout=LEASE_SECONDS + 15)
    delay = time.monotonic() - killed

    print(f"\nwhole worker SIGKILLed -> job completed on a new worker: {delay:.1f} s")
    assert_completed_once(api, dataset, item, job)


def test_sigterm_lets_the_running_job_finish_and_leaves_nothing_processing(api, workers):
    worker = workers("c")
    # Started before the signal, it ends within the grace period.
    dataset, post_processor = stalling(api, sleep=GRACE_SECONDS / 2)
    item = uploaded_item(api, dataset)
    running_pid(post_processor, item)

    worker.send_signal(signal.SIGTERM)  # a warm shutdown, as `docker stop` sends
    assert worker.wait(timeout=30) == 0

    job = the_job(api, dataset, item)
    assert (job["status"], job["attempts"]) == ("completed", 1), job
    processing = ok(api.get(f"/datasets/{dataset['id']}/post-processors/jobs?status=processing"))
    assert processing == []


def test_sigterm_puts_back_a_job_still_running_after_the_grace_period(api, workers):
    worker = workers("f1")
    dataset, post_processor = stalling(api, sleep=60)
    item = uploaded_item(api, dataset)
    running_pid(post_processor, item)

    worker.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert worker.wait(timeout=GRACE_SECONDS + 15) == 0
    stopped = time.monotonic() - signalled
    print(f"\nSIGTERM with a {GRACE_SECONDS} s grace -> worker gone: {stopped:.1f} s")

    # Put back at once, and the stopped run does not count. The worker,
    # stopping, did not start it again (the filesystem broker's worker
    # still hands out messages in its warm shutdown).
    job = the_job(api, dataset, item)
    assert (job["status"], job["attempts"]) == ("pending", 0), job
    assert "Attempt 1 was stopped by a worker shutdown" in job["error"]
    assert "event=job.put_back" in worker_log("f1")
    workers("f2")
    job = wait_for_status(api, dataset, item, "completed", timeout=15)
    assert job["attempts"] == 1, job
    assert job["error"] is None
    assert_written_once(api, dataset, item, job, runs=2)


def test_the_same_message_delivered_three_times_at_once_runs_once(api, workers):
    from shared.broker import make_celery, queue_for
    from shared.queue import TASK_NAME

    workers("g1"), workers("g2")
    dataset, post_processor = stalling(api, sleep=2)
    item = uploaded_item(api, dataset)
    [job] = ok(api.get(item_path(dataset, item) + "/jobs"))
    # Two more copies of the message the upload sent, as a broker that
    # redelivers might: one worker runs the job, the other gets the copies
    # while it runs.
    settings = Settings(**{name.lower(): value for name, value in ENV.items()})
    sender = make_celery(settings)
    message = {
        "job_id": job["id"],
        "item_id": item["id"],
        "post_processor": post_processor["name"],
        "model_type": "classification",
    }
    for _ in range(2):
        sender.send_task(TASK_NAME, kwargs=message, queue=queue_for("classification", settings))

    job = wait_for_status(api, dataset, item, "completed", timeout=20)

    assert job["attempts"] == 1, job
    assert_written_once(api, dataset, item, job, runs=1)

    def skipped() -> int:
        logs = [worker_log(name) for name in ("g1", "g2")]
        return sum(log.count(f"event=job.skipped job_id={job['id']}") for log in logs)

    wait_until(lambda: skipped() >= 2, 10, "both copies dropped")
    time.sleep(0.5)
    assert skipped() == 2


def test_fifty_simultaneous_retries_enqueue_once(api, workers):
    from concurrent.futures import ThreadPoolExecutor

    first = workers("d1")
    dataset, item = failing_item(api, "rejects", "test-reject")
    job = wait_for_status(api, dataset, item, "failed", timeout=15)
    assert job["attempts"] == 1
    retry = item_path(dataset, item) + f"/jobs/{job['id']}/retry"
    # No worker while the retries arrive: the job, failing at once, must not
    # be run and failed again between two of them.
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=30)

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = sorted(pool.map(lambda _: api.post(retry).status_code, range(50)))

    assert statuses == [200] + [409] * 49
    workers("d2")
    job = wait_for_status(api, dataset, item, "failed", timeout=15)
    # One enqueue, one more run: a second message would have found nothing to
    # claim, but a second retry would have run the job again.
    assert job["attempts"] == 2, job


def test_a_poison_job_fails_at_max_attempts_and_the_worker_serves_on(api, workers):
    worker = workers("e")
    dataset, item = failing_item(api, "poison", "test-crash")

    # Each run kills its process; each lost run counts as one attempt.
    job = wait_for_status(api, dataset, item, "failed", timeout=3 * (LEASE_SECONDS + 8))

    assert job["attempts"] == job["max_attempts"] == 3, job
    assert "Attempt 3 was lost" in job["error"]
    assert worker.poll() is None
    quick, _ = stalling(api, sleep=0)
    other = uploaded_item(api, quick)
    assert wait_for_status(api, quick, other, "completed", timeout=15)["attempts"] == 1

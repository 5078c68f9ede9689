"""Redis restarted with 200 jobs queued, keeping nothing on disk: every
queued message is lost (the worst case; docker-compose's Redis keeps an
append-only file). The jobs are in the database, so the reaper sends
them again; the workers reconnect by themselves; uploads made while Redis
is down are kept. Every job completes, none twice.

Real processes on a redis-server of the test's own (the machine's shared
one is left alone), so only on the services backend.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.builders import item_path, make_dataset, make_item, make_label, make_post_processor, ok
from tests.builders import upload as upload_file
from tests.conftest import BACKEND, VAR_DIR
from tests.faults.stack import LEASES, children_of
from tests.fixtures import (
    free_port,
    itemflow,
    spawn,
    stop,
    wait_for_http,
    wait_for_worker,
    wait_until,
)

pytestmark = [
    pytest.mark.skipif(
        BACKEND != "services", reason="the embedded backend has no Redis to restart"
    ),
    pytest.mark.skipif(
        BACKEND == "services" and not os.environ["BROKER_URL"].startswith("redis"),
        reason="a Redis fault (on a redis-server of its own): the Redis run has it",
    ),
]

QUEUED = 200
WHILE_DOWN = 10
PENDING_AFTER = 3.0


class RedisServer:
    """A redis-server that keeps nothing on disk, as the machine's own."""

    def __init__(self, port: int, folder: Path) -> None:
        self.port, self.folder = port, folder
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed for this test"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        wait_until(lambda: self._answers(client), 10, "redis-server started")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()  # nothing is saved either way
            self.process.wait(timeout=10)

    @staticmethod
    def _answers(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    folder = Path(tempfile.mkdtemp(prefix="itemflow-redis-"))
    server = RedisServer(free_port(), folder)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def env(redis_server: RedisServer) -> dict[str, str]:
    return {
        "BROKER_URL": redis_server.url,
        "QUEUE_NAME": os.environ["QUEUE_NAME"] + "-redis",
        "POST_PROCESSORS": os.environ["POST_PROCESSORS"] + ",tests.faults.plugins:StallingModel",
        **LEASES,
        "REAPER_PENDING_AFTER_SECONDS": str(PENDING_AFTER),
        "WORKER_CONCURRENCY": "2",
        "PRELOAD_MODELS": "false",
    }


def test_a_redis_restart_with_200_jobs_queued_loses_none_and_runs_none_twice(redis_server, env):
    port = free_port()
    key = itemflow("users", "create", f"redis-{os.urandom(4).hex()}", env=env).strip()
    base = f"http://127.0.0.1:{port}"
    processes = {
        "api": spawn("api", log_name="redis-api", API_PORT=str(port), **env),
        "reaper": spawn("reaper", log_name="redis-reaper", **env),
    }
    for name in ("w1", "w2"):
        name_option = f"--name=redis-{name}@%h"
        processes[name] = spawn("worker", name_option, log_name=f"redis-{name}", **env)
    try:
        wait_for_http(base + "/healthz")
        for name in ("w1", "w2"):
            wait_for_worker(processes[name], f"redis-{name}")
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base + "/api/v1", headers=headers, timeout=60) as client:
            run_the_restart(client, redis_server, processes)
    finally:
        for process in processes.values():
            stop(process)


def run_the_restart(
    client: httpx.Client, redis_server: RedisServer, processes: dict[str, Any]
) -> None:
    dataset = make_dataset(client)
    for name in ("cat", "dog"):
        make_label(client, dataset, name=name)
    make_post_processor(
        client,
        dataset,
        name="slow",
        model_type="classification",
        model_id="test-stall",
        output_target="annotations",
        prompt=json.dumps({"sleep": 0.1, "labels": {"cat": 0.9, "dog": 0.8}}),
    )

    def new_upload(index: int) -> dict[str, Any]:
        item = make_item(client, dataset, name=f"item-{index}")
        ok(upload_file(client, dataset, item, f"text {index}\n".encode(), "a.txt"))
        return item

    # The workers are paused while the uploads fill the queue, so that all
    # 200 jobs are queued when Redis stops.
    workers = [processes["w1"], processes["w2"]]
    pause(workers, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            items = list(pool.map(new_upload, range(QUEUED)))
        assert total(client, dataset, "pending") == QUEUED
        reaper_log = VAR_DIR / "redis-reaper.log"
        before_stop = len(reaper_log.read_text())
        redis_server.stop()
    finally:
        pause(workers, signal.SIGCONT)  # they find their connection gone
    # Uploads while Redis is down are kept; their jobs wait as pending.
    items += [new_upload(QUEUED + index) for index in range(WHILE_DOWN)]
    redis_server.start()
    restarted = time.monotonic()

    everything = QUEUED + WHILE_DOWN
    wait_until(
        lambda: total(client, dataset, "completed") == everything,
        PENDING_AFTER + 90,
        f"all {everything} jobs completed",
    )
    print(f"all {everything} completed {time.monotonic() - restarted:.1f} s after the restart")

    # The same worker processes served them: they reconnected by themselves.
    assert all(process.poll() is None for process in processes.values())
    assert total(client, dataset) == everything
    jobs = ok(client.get(f"/datasets/{dataset['id']}/post-processors/jobs?page_size=1000"))
    assert sorted(job["dataset_item_id"] for job in jobs) == sorted(item["id"] for item in items)
    retried = 0
    for job in jobs:
        # Each run of the model counted as an attempt: none ran twice, bar
        # one whose first run was stopped by the lost connection.
        assert json.loads(job["result"])["runs"] == job["attempts"] <= 2, job
        retried += job["attempts"] - 1
    print(f"jobs whose run the lost connection stopped, run again: {retried}")
    for item in items:
        annotations = ok(client.get(item_path(dataset, item)))["annotations"]
        assert len(annotations) == 2, (item, annotations)
    # The queued messages were lost with Redis: the reaper sent them again.
    # Not quite all of them: a worker may have held a few when it stopped
    # (it runs them on waking), and a resend under way when Redis stopped
    # waits for it and gets through. Each job still ran once.
    resent = re.findall(r"event=job.resent job_id=(\S+)", reaper_log.read_text()[before_stop:])
    queued_items = {item["id"] for item in items[:QUEUED]}
    queued_jobs = {job["id"] for job in jobs if job["dataset_item_id"] in queued_items}
    print(
        f"messages the reaper sent again after Redis stopped: {len(resent)}, for"
        f" {len(queued_jobs & set(resent))} of the {QUEUED} queued jobs"
    )
    assert len(queued_jobs & set(resent)) >= 0.9 * QUEUED


def pause(workers: list[subprocess.Popen[bytes]], how: signal.Signals) -> None:
    for worker in workers:
        for pid in (worker.pid, *children_of(worker.pid)):
            os.kill(pid, how)


def total(client: httpx.Client, dataset: dict[str, Any], status: str = "") -> int:
    query = f"?status={status}&page_size=1" if status else "?page_size=1"
    answer = client.get(f"/datasets/{dataset['id']}/post-processors/jobs{query}")
    return int(ok_response(answer).headers["X-Total-Count"])


def ok_response(response: httpx.Response) -> httpx.Response:
    assert response.status_code == 200, response.text
    return response

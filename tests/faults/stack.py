"""The API (and the reaper) as processes with settings of a fault test's
own, and a client for a new user of them."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.builders import item_path, ok
from tests.conftest import BACKEND, VAR_DIR
from tests.fixtures import (
    free_port,
    itemflow,
    spawn,
    stop,
    wait_for_http,
    wait_for_worker,
    wait_until,
)

# The lease of the fault tests' workers: short, so that a lost job comes
# back within seconds, yet six heartbeats long, so that a renewal may come
# 5 s late (a 2-core machine running two suites at once) before the reaper
# takes a live job back.
LEASE_SECONDS = 6
LEASES = {
    "JOB_LEASE_SECONDS": str(LEASE_SECONDS),
    "JOB_HEARTBEAT_SECONDS": "1",
    "REAPER_INTERVAL_SECONDS": "0.5",
}


def own_broker(name: str) -> dict[str, str]:
    """Settings for a queue (on Redis) or a var dir (embedded) of a fault
    test's own, so that only its workers take its jobs."""
    if BACKEND == "services":
        return {"QUEUE_NAME": f"{os.environ['QUEUE_NAME']}-{name}"}
    return {"VAR_DIR": str(VAR_DIR / name)}


@contextlib.contextmanager
def running_api(
    env: dict[str, str],
    name: str,
    reaper: bool = True,
    api_env: dict[str, str] | None = None,
    timeout: float = 30,
) -> Iterator[httpx.Client]:
    """`itemflow migrate`, then the API (with `api_env` on top of `env`)
    and the reaper, their output in `<name>-api.log` and `<name>-reaper.log`;
    yields a client with a new user's key. Everything stops at the end."""
    port = free_port()
    itemflow("migrate", env=env)
    key = itemflow("users", "create", f"{name}-{os.urandom(4).hex()}", env=env).strip()
    processes: list[subprocess.Popen[bytes]] = [
        spawn("api", log_name=f"{name}-api", API_PORT=str(port), **{**env, **(api_env or {})})
    ]
    if reaper:
        processes.append(spawn("reaper", log_name=f"{name}-reaper", **env))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + "/healthz")
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base + "/api/v1", headers=headers, timeout=timeout) as client:
            yield client
    finally:
        for process in processes:
            stop(process)


@contextlib.contextmanager
def started_workers(
    env: dict[str, str],
    name: str,
    end: Callable[[subprocess.Popen[bytes]], None] = stop,
) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """Start workers with settings `env` by calling the function yielded,
    with a name of each one's own (its log is `<name>-worker-<its name>.log`),
    the options of `itemflow worker` after it, and settings of its own over
    `env` as keywords; each is ended with `end` afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(worker: str, *options: str, **settings: str) -> subprocess.Popen[bytes]:
        log_name = f"{name}-worker-{worker}"
        process = spawn(
            "worker",
            f"--name={name}-{worker}@%h",
            *options,
            log_name=log_name,
            **{**env, **settings},
        )
        started.append(process)
        wait_for_worker(process, log_name)
        return process

    try:
        yield start
    finally:
        for process in started:
            end(process)


def children_of(pid: int) -> list[int]:
    """The pool processes of a worker (Linux: read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (command) state ppid ...": the command may hold spaces.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def the_job(client: httpx.Client, dataset: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    [job] = ok(client.get(item_path(dataset, item) + "/jobs"))
    return job


def wait_for_status(client, dataset, item, status: str, timeout: float) -> dict[str, Any]:
    return wait_until(
        lambda: (job := the_job(client, dataset, item))["status"] == status and job,
        timeout,
        f"job {status}",
    )

"""What a newcomer's `make run` gives: `itemflow up` on the embedded
defaults (SQLite and the filesystem broker, every setting as shipped), then
small text uploads with the `ner` post-processor from several client
threads, against the raw Celery ceiling on the same broker in the same run.

    .venv/bin/python bench/make_run.py [--uploads 300] [--clients 8] [--repeat 1]

Prints, per repeat: the ceiling (raw Celery no-op tasks with itemflow's own
Celery settings, bench/engine.py), itemflow's uploads/s and jobs/s end to
end (from the first job created to the last completed, both on the
database's clock), their ratio, and the CPU per job of each process of
`itemflow up` (API, prefork worker, I/O worker, reaper, Flower) and of this
process's upload threads.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.engine import (  # noqa: E402
    CLI,
    ROOT,
    CpuMeter,
    CpuUse,
    environment,
    free_port,
    parse,
    processes,
    raw_celery,
    stop,
    tree,
    upload_one,
    wait_for_http,
)
from bench.llm import upload_all  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    for run in range(args.repeat):
        with environment("embedded") as env:
            # `make run` as shipped: models loaded at start, logs at INFO.
            for name in ("LOG_LEVEL", "PRELOAD_MODELS"):
                env.pop(name, None)
            ceiling, raw_cpu = raw_celery(env, 1000)
            result = make_run(env, args.uploads, args.clients)
        print(f"\n== run {run + 1} of {args.repeat}: embedded, `itemflow up` ==")
        print(f"raw Celery no-op tasks:    {ceiling:7.1f} /s  (the ceiling)")
        print(f"itemflow uploads:          {result.uploads:7.1f} /s")
        print(
            f"itemflow ner jobs, end to end: {result.jobs:5.1f} /s"
            f"  = {result.jobs / ceiling:.2f} x the ceiling"
        )
        print(f"CPU ms per raw task:       {raw_cpu}")
        print(f"CPU ms per itemflow job:   {result.cpu}", flush=True)
    return 0


@dataclass(frozen=True)
class Result:
    uploads: float
    jobs: float
    cpu: CpuUse


@contextmanager
def itemflow_up(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    """`itemflow up`, its API's address and the local user's key."""
    env.update(API_PORT=str(free_port()), FLOWER_PORT=str(free_port()))
    up = subprocess.Popen(
        [*CLI, "up"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{env['API_PORT']}"
    try:
        wait_for_http(base + "/healthz", timeout=120)
        key = (Path(env["VAR_DIR"]) / "api-key").read_text().strip()
        yield up, base, key
    finally:
        stop(up)


def make_run(env: dict[str, str], count: int, clients: int) -> Result:
    with itemflow_up(env) as (up, base, key):
        headers = {"Authorization": f"Bearer {key}"}
        api = httpx.Client(base_url=base + "/api/v1", headers=headers, timeout=60)
        dataset = api.post("/datasets", json={"name": "bench", "content_type": "text"}).json()
        api.post(
            f"/datasets/{dataset['id']}/post-processors", json={"name": "ner", "model_type": "ner"}
        ).raise_for_status()
        items = f"/datasets/{dataset['id']}/versions/{dataset['versions'][0]['id']}/items"
        urls = [
            f"{base}/api/v1{items}/{api.post(items, json={}).json()['id']}/upload"
            for _ in range(count + 1)
        ]
        jobs_path = f"/datasets/{dataset['id']}/post-processors/jobs/summary"
        # One first: every process up, its models loaded, its connections made.
        upload_one(base, headers, urls.pop())
        wait_for_completed(api, jobs_path, 1)
        meter = CpuMeter(env, uploads=lambda: [os.getpid()], **children(up.pid))
        started = time.time()
        upload_all(base, headers, urls, clients)
        uploaded = time.time()
        wait_for_completed(api, jobs_path, count + 1)
        cpu = meter.per(count)
        jobs = api.get(
            f"/datasets/{dataset['id']}/post-processors/jobs", params={"page_size": 1000}
        ).json()
        jobs.sort(key=lambda job: job["created_at"])
        measured = jobs[1:]  # not the first, made before the clock started
        first = min(parse(job["created_at"]) for job in measured)
        last = max(parse(job["completed_at"]) for job in measured)
        return Result(count / (uploaded - started), count / (last - first), cpu)


ROLES = (b"api", b"worker", b"reaper", b"flower")


def children(pid: int) -> dict[str, Callable[[], list[int]]]:
    """`itemflow up`'s children by what they run, each with its own children."""
    found: dict[str, Callable[[], list[int]]] = {}
    for child, parent, _ in processes():
        if parent != pid:
            continue
        command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        role = next((part.decode() for part in command if part in ROLES), "other")
        if role == "worker" and b"--pool=threads" in command:
            role = "io-worker"
        found[role] = lambda child=child: tree(child)
    return found


def wait_for_completed(api: httpx.Client, path: str, count: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        summary = api.get(path).json()
        done = sum(row["counts"].get("completed", 0) for row in summary["post_processors"])
        failed = sum(row["counts"].get("failed", 0) for row in summary["post_processors"])
        if failed:
            raise RuntimeError(f"{failed} jobs failed: {summary}")
        if done >= count:
            return
        time.sleep(0.25)
    raise TimeoutError(f"fewer than {count} jobs completed after {timeout} s")


if __name__ == "__main__":
    sys.exit(main())

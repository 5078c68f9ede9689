"""How close itemflow runs to the engine under it, measured side by side in
one run, as ratios (this machine is shared and noisy: a time alone means
little).

    .venv/bin/python bench/engine.py [--jobs 1000] [--clients 8] [--backend services|embedded|both]

For each backend (PostgreSQL + Redis on 127.0.0.1, and the embedded
default: SQLite and Celery's filesystem broker):

- the ceiling: raw Celery no-op tasks with itemflow's own Celery settings
  (acks_late, prefetch 1, the same worker concurrency), sent as fast as one
  process can, counted as they complete;
- itemflow end to end: --jobs small text uploads from --clients threads to
  `itemflow api`, each starting one job of a no-op post-processor on an
  `itemflow worker`: uploads per second, and jobs completed per second from
  the first upload to the last job done;
- the ratio of the two;
- upload -> job picked up on an idle system (the claim's start against the
  job's creation, both on the database's clock): p50 and p99 over
  sequential uploads;
- where the CPU goes, for the ceiling and for itemflow end to end: CPU time
  per task or job (user + system, from /proc) of each process taking part:
  the sender (the raw one, or this process's upload threads), the API, the
  worker (its main and pool processes), and where they are used PostgreSQL
  (every `postgres` process) and Redis (`redis-server`), with their sum. All of them share
  the machine's cores, so the sum bounds the rate: at 2 cores, a rate of
  R jobs/s leaves 2000 / R ms of CPU per job for everything.

Each backend gets a database (or var dir) and queues of its own, removed at
the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
ADMIN_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CLI = [sys.executable, "-m", "shared.cli"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--latency-samples", type=int, default=50)
    parser.add_argument("--backend", choices=["services", "embedded", "both"], default="both")
    parser.add_argument("--api-workers", type=int, default=1, help="API_WORKERS of the API")
    args = parser.parse_args()
    backends = ["services", "embedded"] if args.backend == "both" else [args.backend]
    for backend in backends:
        with environment(backend) as env:
            measure(backend, {**env, "API_WORKERS": str(args.api_workers)}, args)
    return 0


@contextmanager
def environment(backend: str) -> Iterator[dict[str, str]]:
    run = f"bench{os.getpid()}{uuid.uuid4().hex[:6]}"
    var = Path(tempfile.mkdtemp(prefix="itemflow-bench-"))
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in (
            "DATABASE_URL",
            "BROKER_URL",
            "STORAGE_URL",
            "POST_PROCESSORS",
            "PROVIDERS",
            "PROVIDERS_FILE",
        )
    }
    env.update(
        VAR_DIR=str(var),
        QUEUE_NAME=run,
        LOG_LEVEL="WARNING",
        PRELOAD_MODELS="false",
        BENCH_COUNTER=str(var / "runs"),
        API_PORT=str(free_port()),
    )
    admin = None
    if backend == "services":
        admin = create_engine(ADMIN_DATABASE_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{run}"'))
        env["DATABASE_URL"] = ADMIN_DATABASE_URL.rsplit("/", 1)[0] + "/" + run
        env["BROKER_URL"] = "redis://127.0.0.1:6379/14"
    try:
        subprocess.run([*CLI, "migrate"], env=env, check=True, capture_output=True, cwd=ROOT)
        yield env
    finally:
        if admin is not None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{run}" WITH (FORCE)'))
            admin.dispose()
            # The queues' bindings (the queues themselves go when emptied).
            broker = redis.Redis.from_url(env["BROKER_URL"])
            for key in broker.scan_iter(f"*{run}*"):
                broker.delete(key)
        shutil.rmtree(var, ignore_errors=True)


def measure(backend: str, env: dict[str, str], args: argparse.Namespace) -> None:
    print(f"\n== {backend} ==", flush=True)
    ceiling, raw_cpu = raw_celery(env, args.jobs)
    uploads, jobs, job_cpu = end_to_end(env, args.jobs, args.clients)
    picked_up = pickup_latency(env, args.latency_samples)
    print(f"raw Celery no-op tasks:  {ceiling:7.1f} /s  (the ceiling)")
    print(f"itemflow uploads:        {uploads:7.1f} /s")
    print(f"itemflow jobs, end to end: {jobs:5.1f} /s  = {jobs / ceiling:.2f} x the ceiling")
    p50, p99 = percentile(picked_up, 50), percentile(picked_up, 99)
    print(f"upload -> picked up:     p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
    print(f"CPU ms per raw task:     {raw_cpu}")
    print(f"CPU ms per itemflow job: {job_cpu}")
    cores = os.cpu_count() or 1
    print(
        f"at half the ceiling ({ceiling / 2:.0f} jobs/s) each job may take "
        f"{cores * 1000 / (ceiling / 2):.1f} ms of CPU in all ({cores} cores)",
        flush=True,
    )


def raw_celery(env: dict[str, str], count: int) -> tuple[float, CpuUse]:
    """No-op tasks per second, from the first send to the last completed."""
    counter = Path(env["BENCH_COUNTER"])
    counter.unlink(missing_ok=True)
    raw = {**env, "BENCH_RAW_CELERY": "1"}
    queue = env["QUEUE_NAME"] + ".raw"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.noop:app", "worker", "-Q", queue,
         "-l", "warning", "-n", f"raw-{queue}@%h"],
        env=raw, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        sender = subprocess.Popen(
            [sys.executable, "-c", SEND_RAW, queue, str(count)],
            env=raw, cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert sender.stdout is not None
        # Its first task has run once it prints: the sends start then.
        started = float(sender.stdout.readline())
        meter = CpuMeter(env, sender=lambda: [sender.pid], worker=lambda: tree(worker.pid))
        finished = wait_for_runs(counter, count + 1)
        cpu = meter.per(count)
        sender.wait()
        return count / (finished - started), cpu
    finally:
        stop(worker)


# In a process of its own, as the API sends: the app built, then the sends.
SEND_RAW = """
import os, sys, time
sys.path.insert(0, ".")
from bench.noop import app
queue, count = sys.argv[1], int(sys.argv[2])
counter = os.environ["BENCH_COUNTER"]
# One first, until it has run: the worker is up, every connection made.
app.send_task("bench.noop", queue=queue)
while not os.path.exists(counter) or os.path.getsize(counter) < 1:
    time.sleep(0.005)
print(time.time(), flush=True)
for _ in range(count):
    app.send_task("bench.noop", queue=queue)
"""


@dataclass(frozen=True)
class Running:
    """itemflow as `itemflow` started it."""

    base: str  # the API's address
    headers: dict[str, str]  # a new user's
    api: int  # process ids
    worker: int | None


@contextmanager
def itemflow(env: dict[str, str], name: str, worker: bool = True) -> Iterator[Running]:
    """`itemflow api`, and a worker for the no-op model unless `worker` is
    false, for a new user."""
    env = {**env, "POST_PROCESSORS": "bench.noop:NoopModel"}
    key = subprocess.run(
        [*CLI, "users", "create", f"{name}-{uuid.uuid4().hex[:6]}"],
        env=env, cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    processes = [subprocess.Popen([*CLI, "api"], env=env, cwd=ROOT)]
    if worker:
        processes.append(
            subprocess.Popen(
                [
                    *CLI,
                    "worker",
                    "--queues",
                    "classification",
                    f"--name={name}-{env['QUEUE_NAME']}@%h",
                ],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        )
    base = f"http://127.0.0.1:{env['API_PORT']}"
    try:
        wait_for_http(base + "/healthz")
        yield Running(
            base,
            {"Authorization": f"Bearer {key}"},
            processes[0].pid,
            processes[1].pid if worker else None,
        )
    finally:
        for process in reversed(processes):
            stop(process)


def end_to_end(env: dict[str, str], count: int, clients: int) -> tuple[float, float, CpuUse]:
    counter = Path(env["BENCH_COUNTER"])
    counter.unlink(missing_ok=True)
    with itemflow(env, "bench") as running:
        base, headers = running.base, running.headers
        with httpx.Client(base_url=base + "/api/v1", headers=headers, timeout=60) as client:
            items = upload_targets(client, count + 1)
        # One upload first: the worker has started and every connection is made.
        upload_one(base, headers, items.pop())
        wait_for_runs(counter, 1)
        counter.unlink()
        meter = CpuMeter(
            env,
            sender=lambda: [os.getpid()],
            api=lambda: tree(running.api),
            worker=lambda: tree(running.worker or 0),
        )
        started = time.time()
        with ThreadPoolExecutor(clients) as pool:
            local = threading.local()

            def send(url: str) -> None:
                if not hasattr(local, "client"):
                    local.client = httpx.Client(headers=headers, timeout=60)
                upload_one(base, headers, url, local.client)

            list(pool.map(send, items))
        uploaded = time.time()
        finished = wait_for_runs(counter, count)
        cpu = meter.per(count)
        return count / (uploaded - started), count / (finished - started), cpu


def pickup_latency(env: dict[str, str], samples: int) -> list[float]:
    """Seconds from a job's creation to its claim, on an idle system."""
    counter = Path(env["BENCH_COUNTER"])
    with itemflow(env, "pickup") as running:
        base, headers = running.base, running.headers
        with httpx.Client(base_url=base + "/api/v1", headers=headers, timeout=60) as client:
            dataset_id, items = upload_targets(client, samples + 1, with_dataset=True)
            with httpx.Client(headers=headers, timeout=60) as uploader:
                for url in items:
                    done = runs(counter)
                    upload_one(base, headers, url, uploader)
                    wait_for_runs(counter, done + 1)
                    time.sleep(0.2)  # idle between uploads
            jobs = client.get(
                f"/datasets/{dataset_id}/post-processors/jobs", params={"page_size": 1000}
            ).json()
        jobs.sort(key=lambda job: job["created_at"])
        delays = [parse(job["started_at"]) - parse(job["created_at"]) for job in jobs]
        return sorted(delays[1:])  # the first job warmed the worker up


def upload_targets(  # type: ignore[no-untyped-def]
    client: Any, count: int, with_dataset: bool = False, clients: int = 1
):
    """A dataset with the no-op post-processor, and `count` items' upload
    URLs, the items made from `clients` threads. `client` is based at the
    API's /api/v1: an httpx client, or Starlette's test client."""
    dataset = client.post("/datasets", json={"name": "bench", "content_type": "text"})
    dataset.raise_for_status()
    ids = dataset.json()
    client.post(
        f"/datasets/{ids['id']}/post-processors",
        json={"name": "noop", "model_type": "classification", "model_id": "bench-noop"},
    ).raise_for_status()
    items_path = f"/datasets/{ids['id']}/versions/{ids['versions'][0]['id']}/items"
    base = str(client.base_url).rstrip("/")

    def new_item(_: int) -> str:
        answer = client.post(items_path, json={})
        answer.raise_for_status()
        return f"{base}{items_path}/{answer.json()['id']}/upload"

    with ThreadPoolExecutor(clients) as pool:
        urls = list(pool.map(new_item, range(count)))
    return (ids["id"], urls) if with_dataset else urls


def upload_one(
    base: str, headers: dict[str, str], url: str, client: httpx.Client | None = None
) -> None:
    files = {"file": ("note.txt", b"Alice met Bob in Paris.\n", "text/plain")}
    answer = (client or httpx).post(url, files=files, headers=headers)
    answer.raise_for_status()


def runs(counter: Path) -> int:
    return counter.stat().st_size if counter.exists() else 0


def wait_for_runs(counter: Path, count: int, timeout: float = 600) -> float:
    """The time when `count` runs were counted."""
    deadline = time.monotonic() + timeout
    while runs(counter) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{runs(counter)} of {count} runs after {timeout} s")
        time.sleep(0.002)
    return time.time()


def parse(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processes() -> list[tuple[int, int, str]]:
    """(pid, ppid, command name) of every process."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                head, tail = (entry / "stat").read_text().rsplit(")", 1)
            except OSError:
                continue
            found.append((int(entry.name), int(tail.split()[1]), head.split("(", 1)[1]))
    return found


def tree(pid: int) -> list[int]:
    """A process and its descendants."""
    table = processes()
    found, frontier = [pid], [pid]
    while frontier:
        children = [child for child, parent, _ in table if parent in frontier]
        found += children
        frontier = children
    return found


def named(name: str) -> list[int]:
    return [pid for pid, _, command in processes() if command == name]


class CpuUse(dict[str, float]):
    """Milliseconds of CPU per task, by process group, with their sum."""

    def __str__(self) -> str:
        parts = [f"{name} {ms:.2f}" for name, ms in self.items()]
        return ", ".join(parts) + f"; sum {sum(self.values()):.2f}"


class CpuMeter:
    """CPU time of groups of processes from now to `per`: the groups given,
    and the PostgreSQL and Redis servers when `env` uses them. A group's
    processes are looked up at both ends; one that ended between them
    loses its share, which the long-lived processes measured here do not."""

    def __init__(self, env: dict[str, str], **groups: Callable[[], list[int]]) -> None:
        self.groups = dict(groups)
        if env.get("DATABASE_URL", "").startswith("postgresql"):
            self.groups["postgres"] = lambda: named("postgres")
        if env.get("BROKER_URL", "").startswith("redis"):
            self.groups["redis"] = lambda: named("redis-server")
        self.before = {name: self._times(find) for name, find in self.groups.items()}

    @staticmethod
    def _times(find: Callable[[], list[int]]) -> dict[int, float]:
        return {pid: cpu_seconds(pid) for pid in find()}

    def per(self, count: int) -> CpuUse:
        use = CpuUse()
        for name, find in self.groups.items():
            before, after = self.before[name], self._times(find)
            spent = sum(after[pid] - before.get(pid, 0.0) for pid in after)
            use[name] = spent * 1000 / count
        return use


def percentile(values: list[float], percent: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def wait_for_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(url)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


if __name__ == "__main__":
    sys.exit(main())

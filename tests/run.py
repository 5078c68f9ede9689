"""`make test`: the whole suite on PostgreSQL + Redis when they answer, the
worker, end-to-end and broker fault tests once more on PostgreSQL +
RabbitMQ when it answers too, then the API suite on the embedded default
(SQLite + filesystem broker). Without PostgreSQL and Redis, everything runs
embedded and says so.

The fault tests mostly wait (for leases to run out, workers to stop,
servers to restart), so they run beside the rest, as a pytest run of their
own, and so do the RabbitMQ run and the lost-worker tests on the embedded
default; each run has its own database, queues
(on RabbitMQ, a virtual host) and files. Their output is printed whole as
each ends. With arguments (`make test ARGS=...` or `python -m tests.run -k
...`), everything runs in one pytest run, as asked.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Run:
    title: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)


RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
SPLIT = (
    Run("the suite but the fault tests", ["tests", "--ignore=tests/faults"]),
    Run("the fault tests", ["tests/faults"]),
)
# What meets the broker: the workers, the whole system, and the fault tests
# of lost workers, lost messages and the messages a worker sends again while
# the database is down (the Redis restart is Redis's own).
ON_RABBITMQ = Run(
    "the worker, end-to-end and broker fault tests on RabbitMQ",
    [
        "tests/worker",
        # A run over 1,000 items makes and sends its jobs as uploads do:
        # nothing of it is the broker's, and it is the worker tests' longest.
        "--ignore=tests/worker/test_backfill.py",
        "tests/e2e",
        "tests/faults/test_worker_kill.py",
        "tests/faults/test_lost_messages.py",
        "tests/faults/test_postgres_outage.py",
    ],
    {"TEST_BROKER_URL": RABBITMQ_URL},
)
# Pool processes killed on the embedded default too: its worker runs another
# event loop than on Redis or RabbitMQ, with the broker's folder polled.
EMBEDDED_KILLS = Run(
    "the lost-worker fault tests",
    ["tests/faults/test_worker_kill.py"],
    {"ITEMFLOW_TEST_BACKEND": "embedded"},
)
SERVICES = {"PostgreSQL": ("127.0.0.1", 5432), "Redis": ("127.0.0.1", 6379)}
RABBITMQ = ("127.0.0.1", 5672)


def reachable(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=2).close()
    except OSError:
        return False
    return True


def pytest(backend: str, *args: str) -> int:
    print(f"\n=== tests on {describe(backend)} ===", flush=True)
    env = {**os.environ, "ITEMFLOW_TEST_BACKEND": backend}
    return subprocess.call([sys.executable, "-m", "pytest", *args], env=env)


def side_by_side(backend: str, *runs: Run) -> int:
    """Several pytest runs at once; each one's output printed when it ends."""
    failed = 0
    with contextlib.ExitStack() as stack:
        started = []
        for run in runs:
            env = {**os.environ, "ITEMFLOW_TEST_BACKEND": backend, **run.env}
            log = stack.enter_context(tempfile.TemporaryFile())
            # A cache of its own each: the last run to end would otherwise
            # overwrite the other's record of what failed (`--lf`).
            cache = f"cache_dir=.pytest_cache/{run.title.replace(' ', '-')}"
            command = [sys.executable, "-m", "pytest", "-o", cache, *run.args]
            process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
            started.append((run, log, process))
        for run, log, process in started:
            failed |= process.wait()
            print(f"\n=== {run.title} on {describe(backend, run.env)} ===", flush=True)
            log.seek(0)
            sys.stdout.buffer.write(log.read())
            sys.stdout.flush()
    return failed


def describe(backend: str, env: dict[str, str] | None = None) -> str:
    backend = (env or {}).get("ITEMFLOW_TEST_BACKEND", backend)
    if backend == "services" and env and "TEST_BROKER_URL" in env:
        return "PostgreSQL (127.0.0.1:5432) and RabbitMQ (127.0.0.1:5672)"
    if backend == "services":
        return "PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379)"
    return "the embedded default: SQLite and Celery's filesystem broker"


def main() -> int:
    extra = sys.argv[1:]
    required = os.environ.get("ITEMFLOW_TEST_REQUIRE_SERVICES")
    missing = [name for name, address in SERVICES.items() if not reachable(address)]
    if missing:
        if required:
            print(f"{' and '.join(missing)} not reachable, and this run requires them.")
            return 1
        print(f"{' and '.join(missing)} not reachable: running everything embedded.")
        if extra:
            return pytest("embedded", *extra)
        return side_by_side("embedded", *SPLIT)
    if extra:
        failed = pytest("services", *extra)
        return failed | pytest("embedded", "tests/api", *extra)
    runs = (*SPLIT, EMBEDDED_KILLS)
    if reachable(RABBITMQ):
        runs = (*runs, ON_RABBITMQ)
    elif required:
        print("RabbitMQ not reachable on 127.0.0.1:5672, and this run requires it.")
        return 1
    else:
        print("RabbitMQ not reachable on 127.0.0.1:5672: its run is left out.")
    failed = side_by_side("services", *runs)
    # The API, and the sessions' SQLite side.
    return failed | pytest("embedded", "tests/api", "tests/shared/test_db.py")


if __name__ == "__main__":
    sys.exit(main())

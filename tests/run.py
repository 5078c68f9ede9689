"""`make test`: the whole suite on PostgreSQL + Redis when they answer, then
the API suite once more on the embedded default (SQLite + filesystem
broker). Without PostgreSQL and Redis, everything runs embedded and says so.

The fault tests mostly wait (for leases to run out, workers to stop,
servers to restart), so they run beside the rest, as a pytest run of their
own; each run has its own database, queues and files. Their output is
printed whole as each ends. With arguments (`make test ARGS=...` or
`python -m tests.run -k ...`), everything runs in one pytest run, as asked.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile

SPLIT = (
    ("the suite but the fault tests", ["tests", "--ignore=tests/faults"]),
    ("the fault tests", ["tests/faults"]),
)
SERVICES = {"PostgreSQL": ("127.0.0.1", 5432), "Redis": ("127.0.0.1", 6379)}


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


def side_by_side(backend: str, *runs: tuple[str, list[str]]) -> int:
    """Several pytest runs at once; each one's output printed when it ends."""
    env = {**os.environ, "ITEMFLOW_TEST_BACKEND": backend}
    failed = 0
    with contextlib.ExitStack() as stack:
        started = []
        for title, args in runs:
            log = stack.enter_context(tempfile.TemporaryFile())
            # A cache of its own each: the last run to end would otherwise
            # overwrite the other's record of what failed (`--lf`).
            cache = f"cache_dir=.pytest_cache/{title.replace(' ', '-')}"
            command = [sys.executable, "-m", "pytest", "-o", cache, *args]
            process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
            started.append((title, log, process))
        for title, log, process in started:
            failed |= process.wait()
            print(f"\n=== {title} on {describe(backend)} ===", flush=True)
            log.seek(0)
            sys.stdout.buffer.write(log.read())
            sys.stdout.flush()
    return failed


def describe(backend: str) -> str:
    if backend == "services":
        return "PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379)"
    return "the embedded default: SQLite and Celery's filesystem broker"


def main() -> int:
    extra = sys.argv[1:]
    missing = [name for name, address in SERVICES.items() if not reachable(address)]
    if missing:
        if os.environ.get("ITEMFLOW_TEST_REQUIRE_SERVICES"):
            print(f"{' and '.join(missing)} not reachable, and this run requires them.")
            return 1
        print(f"{' and '.join(missing)} not reachable: running everything embedded.")
        if extra:
            return pytest("embedded", *extra)
        return side_by_side("embedded", *SPLIT)
    if extra:
        failed = pytest("services", *extra)
        return failed | pytest("embedded", "tests/api", *extra)
    failed = side_by_side("services", *SPLIT)
    return failed | pytest("embedded", "tests/api")


if __name__ == "__main__":
    sys.exit(main())

"""`make test`: the whole suite on PostgreSQL + Redis when they answer, then
the API suite once more on the embedded default (SQLite + filesystem
broker). Without PostgreSQL and Redis, everything runs embedded and says so.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

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
        return pytest("embedded", *extra)
    failed = pytest("services", *extra)
    failed |= pytest("embedded", "tests/api", *extra)
    return failed


if __name__ == "__main__":
    sys.exit(main())

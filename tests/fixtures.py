"""Fixtures: the database, the API server, the worker, clients."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text

from shared.provider_config import BUILT_IN
from tests.builders import make_dataset, make_item
from tests.conftest import ADMIN_DATABASE_URL, BACKEND, RUN_ID, TEST_DATABASE, VAR_DIR
from tests.s3 import s3_credentials, s3_prefix, s3_server  # noqa: F401 (fixtures)
from tests.shared.inference.fake_llm_server import FakeProvider, Reply, openai_answer

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fresh_postgres_database() -> None:
    engine = create_engine(ADMIN_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {TEST_DATABASE} WITH (FORCE)"))
        connection.execute(text(f"CREATE DATABASE {TEST_DATABASE}"))
    engine.dispose()


def _drop_postgres_database() -> None:
    engine = create_engine(ADMIN_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {TEST_DATABASE} WITH (FORCE)"))
    engine.dispose()


@pytest.fixture(scope="session", autouse=True)
def database() -> Iterator[None]:
    """A new, migrated database for the run."""
    if BACKEND == "services":
        _fresh_postgres_database()
    from shared.migrate import upgrade_database

    upgrade_database()
    yield
    from shared.db import get_engine

    get_engine().dispose()
    if BACKEND == "services":
        _drop_postgres_database()
        _delete_redis_keys()


def _delete_redis_keys() -> None:
    """The run's queues and kombu's bindings for them, which would otherwise
    pile up in the test Redis database run after run."""
    import redis

    if not os.environ["BROKER_URL"].startswith("redis"):
        return  # RabbitMQ: the run's virtual host goes whole (tests/conftest.py)
    client = redis.Redis.from_url(os.environ["BROKER_URL"])
    prefix = os.environ["QUEUE_NAME"]
    # The prefix followed by "." or "-": not another run's longer pid.
    for pattern in (f"*{prefix}.*", f"*{prefix}-*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    client.close()


@pytest.fixture(scope="session")
def api_url(database: None) -> Iterator[str]:
    """The real API, served by uvicorn over HTTP in a thread of this process."""
    port = free_port()
    config = uvicorn.Config("api.app:app", host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def wait_until(condition: Any, timeout: float, what: str = "the condition") -> Any:
    """Poll `condition` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)


def spawn(*args: str, log_name: str, **env: str) -> subprocess.Popen[bytes]:
    """An itemflow command as a child process, its output in the var dir."""
    # The child keeps its own copy of the file descriptor.
    with open(VAR_DIR / f"{log_name}.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "shared.cli", *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def itemflow(*args: str, env: dict[str, str] | None = None) -> str:
    """Run an itemflow command to the end; its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def wait_for_http(url: str, timeout: float = 30, **kwargs: object) -> None:
    """Until something answers at `url` (any status)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2, **kwargs)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def stop(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_worker(process: subprocess.Popen[bytes], log_name: str, timeout: float = 60) -> None:
    log = VAR_DIR / f"{log_name}.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited:\n{log.read_text()[-3000:]}")
        if log.exists() and " ready." in log.read_text():
            return
        time.sleep(0.2)
    raise RuntimeError(f"the worker did not start:\n{log.read_text()[-3000:]}")


# The operator's key for the session worker's `openai` provider.
OPERATOR_KEY = f"sk-operator-{os.urandom(12).hex()}"


@pytest.fixture(scope="session")
def operator_provider() -> Iterator[FakeProvider]:
    """The operator's OpenAI endpoint as the session worker knows it: a
    local server in the place of api.openai.com."""
    with FakeProvider(Reply(body=openai_answer("From the operator's endpoint."))) as fake:
        yield fake


@pytest.fixture(scope="session")
def worker(database: None, operator_provider: FakeProvider) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker process on the run's broker and database, with
    the operator's key for an `openai` provider at `operator_provider`."""
    providers = {
        "openai": {
            "protocol": "openai",
            "base_url": operator_provider.url + "/v1",
            "api_key_env": "OPENAI_API_KEY",
            "user_base_url": True,
        },
        "anthropic": BUILT_IN["anthropic"].model_dump(),
    }
    # Named per run: runs side by side share the test Redis database.
    process = spawn(
        "worker",
        f"--name=session-{RUN_ID}@%h",
        log_name="worker",
        PROVIDERS=json.dumps(providers),
        OPENAI_API_KEY=OPERATOR_KEY,
    )
    wait_for_worker(process, "worker")
    # The tests that watch the pool processes' memory must not count the
    # models still loading.
    log = VAR_DIR / "worker.log"
    concurrency = int(os.environ["WORKER_CONCURRENCY"])
    wait_until(
        lambda: log.read_text().count("event=worker.process_ready") >= concurrency,
        120,
        "the worker's processes loaded their models",
    )
    yield process
    stop(process)


def new_user_key() -> str:
    from shared.db import session_scope
    from shared.services import users

    with session_scope() as session:
        _user, key = users.create_user(session, f"user-{os.urandom(6).hex()}")
    return key


@pytest.fixture
def client(api_url: str) -> Iterator[httpx.Client]:
    """An HTTP client for a new user of its own, so tests never see each
    other's data."""
    headers = {"Authorization": f"Bearer {new_user_key()}"}
    with httpx.Client(base_url=api_url + "/api/v1", headers=headers, timeout=30) as http:
        yield http


@pytest.fixture
def other_client(api_url: str) -> Iterator[httpx.Client]:
    """A second user, for checking that nothing leaks between users."""
    headers = {"Authorization": f"Bearer {new_user_key()}"}
    with httpx.Client(base_url=api_url + "/api/v1", headers=headers, timeout=30) as http:
        yield http


@pytest.fixture
def dataset(client: httpx.Client) -> dict[str, Any]:
    """A new dataset of the client's user."""
    return make_dataset(client)


@pytest.fixture
def item(client: httpx.Client, dataset: dict[str, Any]) -> dict[str, Any]:
    """A new item in the `dataset` fixture's first version."""
    return make_item(client, dataset)


@pytest.fixture
def anonymous(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url + "/api/v1", timeout=30) as http:
        yield http


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The job messages that would have gone to the broker, for tests that
    call the services in this process."""
    from shared import queue

    messages: list[object] = []
    lock = threading.Lock()

    def record(message: object, countdown: float = 0) -> None:
        with lock:
            messages.append(message)

    monkeypatch.setattr(queue, "send", record)
    return messages

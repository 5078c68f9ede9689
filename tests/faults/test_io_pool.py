"""The worker for jobs that call an external provider (`itemflow worker
--pool threads --queues external`, as `itemflow up` starts it): many calls
at once without a process each, the operator's per-provider limit still
held, and a warm shutdown that puts back the calls it cannot interrupt."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tests.builders import item_path, make_dataset, make_item, make_post_processor, ok, upload
from tests.faults.stack import LEASES, own_broker, running_api, started_workers, the_job
from tests.fixtures import wait_until
from tests.shared.inference.fake_llm_server import _QuietServer, openai_answer

IO_POOL = ("--pool=threads", "--queues=external")
ENV = {
    **own_broker("io-pool"),
    **LEASES,
    "WORKER_SHUTDOWN_GRACE_SECONDS": "1",
    # The operator's endpoint, with a limit of 3 calls at once; a user's own
    # base_url (below) has none.
    "PROVIDERS": "",  # set per test: the server's port is known only then
    "OPENAI_API_KEY": "sk-operator-io-pool",
}


class GatedProvider:
    """An OpenAI-protocol server whose answers wait until `open_at` calls
    are in flight at once (or the gate is opened by hand), counting the
    most it ever had in flight."""

    def __init__(self, open_at: int | None = None, delay: float = 0.0) -> None:
        self.open_at = open_at
        self.delay = delay
        self.in_flight = 0
        self.most = 0
        self.calls = 0
        self.gate = threading.Event()
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.gate.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                with provider._lock:
                    provider.calls += 1
                    provider.in_flight += 1
                    provider.most = max(provider.most, provider.in_flight)
                    if provider.open_at is not None and provider.in_flight >= provider.open_at:
                        provider.gate.set()
                try:
                    if provider.open_at is None:
                        time.sleep(provider.delay)
                    else:
                        provider.gate.wait(60)
                finally:
                    with provider._lock:
                        provider.in_flight -= 1
                payload = json.dumps(openai_answer("An answer.")).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def gated() -> Iterator[list[GatedProvider]]:
    made: list[GatedProvider] = []
    yield made
    for provider in made:
        provider.close()


def env_for(provider: GatedProvider, max_concurrency: int | None = None) -> dict[str, str]:
    declaration: dict[str, Any] = {
        "protocol": "openai",
        "base_url": provider.url + "/v1",
        "api_key_env": "OPENAI_API_KEY",
        "user_base_url": True,
    }
    if max_concurrency is not None:
        declaration["max_concurrency"] = max_concurrency
    return {**ENV, "PROVIDERS": json.dumps({"openai": declaration})}


def llm_uploads(api, provider: GatedProvider, count: int, users_own: bool) -> list[Any]:
    """`count` uploads to a dataset with an `llm` post-processor calling
    `provider` (as the user's own base_url, or as the operator's endpoint)."""
    dataset = make_dataset(api, content_type="text")
    config = {"base_url": provider.url + "/v1"} if users_own else {}
    make_post_processor(
        api,
        dataset,
        name="answer",
        model_type="llm",
        external_provider="openai",
        external_model="test-model",
        external_config=json.dumps(config),
        prompt="Answer: {text}",
    )
    items = []
    for number in range(count):
        item = make_item(api, dataset, name=f"note-{number}")
        ok(upload(api, dataset, item, f"Question {number}?\n".encode(), "note.txt"))
        items.append((dataset, item))
    return items


def all_completed(api, items) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        jobs = [the_job(api, dataset, item) for dataset, item in items]
        return jobs if all(job["status"] == "completed" for job in jobs) else None

    return wait_until(done, 60, "every job completed")


def test_one_worker_has_dozens_of_calls_in_flight_at_once(gated):
    provider = GatedProvider(open_at=32)
    gated.append(provider)
    env = env_for(provider)
    with running_api(env, "io-many") as api, started_workers(env, "io-many") as start:
        start("w1", *IO_POOL)
        items = llm_uploads(api, provider, 40, users_own=True)

        jobs = all_completed(api, items)

        # Every answer waited until 32 calls were waiting together: one
        # worker on two cores held them all, each job run once.
        assert provider.most >= 32, provider.most
        assert provider.calls == 40
        assert {job["attempts"] for job in jobs} == {1}
        dataset, item = items[0]
        assert ok(api.get(item_path(dataset, item)))["text"] == "An answer."


def test_the_operators_limit_on_a_provider_holds_across_the_threads(gated):
    provider = GatedProvider(delay=0.3)
    gated.append(provider)
    env = env_for(provider, max_concurrency=3)
    with running_api(env, "io-limit") as api, started_workers(env, "io-limit") as start:
        start("w1", *IO_POOL)
        items = llm_uploads(api, provider, 12, users_own=False)

        jobs = all_completed(api, items)

    assert provider.most == 3
    assert provider.calls == 12
    assert {job["attempts"] for job in jobs} == {1}


def test_a_warm_shutdown_puts_back_the_calls_in_flight_and_exits(gated):
    """Threads cannot be interrupted: after the grace period the worker
    hands their jobs back (the attempt does not count: one more is allowed),
    exits without waiting for the calls, and another worker completes them."""
    provider = GatedProvider(open_at=10_000)  # answers only when opened by hand
    gated.append(provider)
    env = env_for(provider)
    with running_api(env, "io-stop") as api, started_workers(env, "io-stop") as start:
        worker = start("w1", *IO_POOL)
        items = llm_uploads(api, provider, 5, users_own=True)
        wait_until(lambda: provider.in_flight == 5, 30, "five calls in flight")

        worker.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        worker.wait(timeout=20)
        took = time.monotonic() - stopped

        put_back = [the_job(api, dataset, item) for dataset, item in items]
        assert {job["status"] for job in put_back} == {"pending"}, put_back
        assert {(job["attempts"], job["max_attempts"]) for job in put_back} == {(1, 4)}
        assert "Attempt 1 was still running when its worker shut down" in put_back[0]["error"]

        provider.gate.set()
        start("w2", *IO_POOL)
        jobs = all_completed(api, items)

        # The grace period (1 s), not the calls (held until opened), set its end.
        assert took < 10, took
        assert {(job["attempts"], job["max_attempts"]) for job in jobs} == {(2, 4)}
        dataset, item = items[0]
        assert ok(api.get(item_path(dataset, item)))["text"] == "An answer."

"""How many calls to an LLM provider itemflow has in flight at once, and how
many `llm` jobs it completes per second, when the provider answers slowly.

    .venv/bin/python bench/llm.py [--uploads 200] [--clients 8] [--delay 1.0]
        [--backend services|embedded|both]

For each backend (PostgreSQL + Redis on 127.0.0.1, and the embedded
default: SQLite and Celery's filesystem broker):

- a server speaking OpenAI's Chat Completions runs in this process and
  answers every call after --delay seconds, counting the calls in flight
  (it never limits them itself);
- `itemflow up` starts everything as a new user starts it, with that server
  declared as the operator's `openai` provider, without max_concurrency;
- through the API, as the local user: a dataset with an `llm`
  post-processor, one upload whose job warms the system up, then --uploads
  small text items from --clients threads, each starting one job;
- once every job is done (read from the database; a failed job stops the
  run with its error): uploads per second, jobs completed per second from
  the first upload to the last job's completion (the job's own timestamp,
  written on this machine's clock), and the most calls the server had in
  flight at once.

With the provider the bottleneck, jobs/s is at best calls in flight / delay.
Each backend gets a database (or var dir) and queues of its own (see
bench/engine.py's `environment`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn

import httpx
from sqlalchemy import Engine, create_engine, func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.engine import CLI, environment, free_port, stop, upload_one, wait_for_http  # noqa: E402
from shared.models import PostProcessorJob  # noqa: E402

MODEL = "bench"
API_KEY = "sk-bench"
ANSWER = {
    "id": "x",
    "object": "chat.completion",
    "model": MODEL,
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
Up = subprocess.Popen[bytes]  # the `itemflow up` process
GOAL_IN_FLIGHT = 32
GOAL_JOBS_PER_SECOND = 20.0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds the provider takes")
    parser.add_argument("--backend", choices=["services", "embedded", "both"], default="both")
    args = parser.parse_args()
    backends = ["services", "embedded"] if args.backend == "both" else [args.backend]
    for backend in backends:
        with environment(backend) as env, SlowProvider.running(args.delay) as provider:
            figures = measure({**env, **provider_env(env, provider)}, provider, args)
            report(backend, figures, args)
    return 0


# --- the provider ----------------------------------------------------------


class Calls:
    """The calls the server is answering and has answered."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0
        self.total = 0

    @contextmanager
    def one(self) -> Iterator[None]:
        with self.lock:
            self.in_flight += 1
            self.total += 1
            self.most = max(self.most, self.in_flight)
        try:
            yield
        finally:
            with self.lock:
                self.in_flight -= 1

    def reset(self) -> None:
        with self.lock:
            self.most, self.total = self.in_flight, 0


class SlowProvider(ThreadingHTTPServer):
    """A Chat Completions endpoint that takes `delay` seconds per answer."""

    # A thread per connection and a long listen backlog: whatever limits
    # the calls in flight, it is not this server.
    daemon_threads = True
    request_queue_size = 512

    def __init__(self, delay: float) -> None:
        # Port 0: the kernel's free port, with no window for another to take it.
        super().__init__(("127.0.0.1", 0), ChatCompletions)
        self.delay = delay
        self.calls = Calls()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    @classmethod
    @contextmanager
    def running(cls, delay: float) -> Iterator[SlowProvider]:
        server = cls(delay)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.shutdown()
            server.server_close()


class ChatCompletions(BaseHTTPRequestHandler):
    server: SlowProvider

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/v1/chat/completions":
            self.answer(404, {"error": {"message": f"no route {self.path}"}})
        elif self.headers.get("Authorization") != f"Bearer {API_KEY}":
            # The operator's key must reach the operator's endpoint: without
            # it every job fails, loudly, rather than measuring nothing.
            self.answer(401, {"error": {"message": "not the operator's key"}})
        else:
            with self.server.calls.one():
                time.sleep(self.server.delay)
                self.answer(200, ANSWER)

    def answer(self, status: int, body: dict[str, Any]) -> None:
        content = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per call would bury the figures


def provider_env(env: dict[str, str], provider: SlowProvider) -> dict[str, str]:
    """What `itemflow up` needs beyond the backend's settings: its ports and
    the operator's declaration of the provider, without max_concurrency."""
    declaration = {
        "protocol": "openai",
        "base_url": provider.base_url,
        "api_key_env": "OPENAI_API_KEY",
        "models": [MODEL],
    }
    # The operator's endpoint honours the proxy settings: a proxy set in
    # this shell must not stand between the workers and 127.0.0.1.
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
    return {
        "FLOWER_PORT": str(free_port()),
        "PROVIDERS": json.dumps({"openai": declaration}),
        "OPENAI_API_KEY": API_KEY,
        "NO_PROXY": no_proxy,
    }


# --- itemflow ----------------------------------------------------------------


@contextmanager
def itemflow_up(env: dict[str, str]) -> Iterator[tuple[str, dict[str, str], Up]]:
    """`itemflow up` until the block ends: the API's base URL, the local
    user's headers, and the `up` process."""
    var = Path(env["VAR_DIR"])
    log = var / "up.log"
    with log.open("wb") as output:
        # A session of its own: its process group is ours to end, and a
        # Ctrl-C here reaches it only through `stop`, once.
        up = subprocess.Popen(
            [*CLI, "up"], env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_until_ready(up, f"http://127.0.0.1:{env['API_PORT']}/healthz", log)
        # Written by `up` before it starts the API (shared/up.py, local_key).
        key = (var / "api-key").read_text().strip()
        base = f"http://127.0.0.1:{env['API_PORT']}/api/v1"
        yield base, {"Authorization": f"Bearer {key}"}, up
    finally:
        # `up` stops its children, and they would stop with it if it died.
        stop(up)


def wait_until_ready(up: Up, url: str, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if up.poll() is not None:
            fail(f"`itemflow up` exited with {up.returncode}", log)
        try:
            wait_for_http(url, timeout=1)
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                fail(f"the API did not answer {url} within {timeout:g} s", log)


def fail(message: str, log: Path | None = None) -> NoReturn:
    tail = log.read_text(errors="replace").splitlines()[-40:] if log and log.exists() else []
    raise SystemExit("\n".join([f"FAILED: {message}", *tail]))


# --- the measure ---------------------------------------------------------------


@dataclass
class Figures:
    uploads_per_second: float
    jobs_per_second: float
    most_in_flight: int
    calls: int


def measure(env: dict[str, str], provider: SlowProvider, args: argparse.Namespace) -> Figures:
    database = create_engine(env.get("DATABASE_URL") or sqlite_url(env))
    try:
        with itemflow_up(env) as (base, headers, up):
            with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
                urls = llm_targets(client, args.uploads + 1)
            # One job first: a worker has taken one, every connection is made.
            upload_one(base, headers, urls.pop())
            wait_for_jobs(database, 1, up, env, args.delay)
            provider.calls.reset()
            started = time.time()
            upload_all(base, headers, urls, args.clients)
            uploaded = time.time()
            finished = wait_for_jobs(database, args.uploads + 1, up, env, args.delay)
    finally:
        database.dispose()
    return Figures(
        uploads_per_second=args.uploads / (uploaded - started),
        jobs_per_second=args.uploads / (finished - started),
        most_in_flight=provider.calls.most,
        calls=provider.calls.total,
    )


def sqlite_url(env: dict[str, str]) -> str:
    # As Settings.effective_database_url has it without DATABASE_URL.
    return f"sqlite:///{(Path(env['VAR_DIR']) / 'itemflow.db').resolve()}"


def llm_targets(client: httpx.Client, count: int) -> list[str]:
    """A dataset with an `llm` post-processor on the operator's provider,
    and `count` items' upload URLs."""
    dataset = client.post("/datasets", json={"name": "bench", "content_type": "text"})
    dataset.raise_for_status()
    dataset_id, version_id = dataset.json()["id"], dataset.json()["versions"][0]["id"]
    client.post(
        f"/datasets/{dataset_id}/post-processors",
        json={
            "name": "say ok",
            "model_type": "llm",
            "external_provider": "openai",
            "external_model": MODEL,
            "prompt": "Say ok.",
            "output_target": "text",
        },
    ).raise_for_status()
    items = f"/datasets/{dataset_id}/versions/{version_id}/items"
    base = str(client.base_url).rstrip("/")
    ids = [client.post(items, json={}).json()["id"] for _ in range(count)]
    return [f"{base}{items}/{item_id}/upload" for item_id in ids]


def upload_all(base: str, headers: dict[str, str], urls: list[str], clients: int) -> None:
    local = threading.local()

    def send(url: str) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(headers=headers, timeout=60)
        upload_one(base, headers, url, local.client)

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, urls))


def wait_for_jobs(
    database: Engine,
    count: int,
    up: Up,
    env: dict[str, str],
    delay: float,
) -> float:
    """When the last of `count` jobs completed (its completed_at); a failed
    job, or `up` stopping, ends the run."""
    # Slow enough for one call at a time, and then some.
    deadline = time.monotonic() + 120 + count * delay
    log = Path(env["VAR_DIR"]) / "up.log"
    while True:
        with database.connect() as connection:
            counts = dict(
                connection.execute(
                    select(PostProcessorJob.status, func.count()).group_by(PostProcessorJob.status)
                ).all()
            )
            if counts.get("failed"):
                errors = connection.scalars(
                    select(PostProcessorJob.error).where(PostProcessorJob.status == "failed")
                ).all()
                fail(f"{len(errors)} job(s) failed, the first: {errors[0]}")
            if counts.get("completed", 0) >= count:
                last = connection.scalar(select(func.max(PostProcessorJob.completed_at)))
                assert last is not None
                return float(last.timestamp())
        if up.poll() is not None:
            fail(f"`itemflow up` exited with {up.returncode}", log)
        if time.monotonic() > deadline:
            fail(f"not all {count} jobs completed in time: {counts}")
        time.sleep(0.1)


def report(backend: str, figures: Figures, args: argparse.Namespace) -> None:
    print(f"\n== {backend} ==")
    print(f"uploads:             {args.uploads} from {args.clients} clients")
    print(f"provider delay:      {args.delay:g} s a call")
    print(f"uploads/s:           {figures.uploads_per_second:7.1f}")
    print(f"calls to provider:   {figures.calls}")
    print(f"calls in flight at once: {figures.most_in_flight} (goal >= {GOAL_IN_FLIGHT})")
    print(f"jobs/s: {figures.jobs_per_second:.1f} (goal >= {GOAL_JOBS_PER_SECOND:g})", flush=True)


if __name__ == "__main__":
    sys.exit(main())

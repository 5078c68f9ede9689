"""The upload ceiling: itemflow's upload route against a minimal Starlette
handler doing the least an upload must, side by side in one run, as ratios
(this machine is shared and noisy: a time alone means little).

    .venv/bin/python bench/uploads.py [--uploads 1000] [--clients 8] [--rounds 2]
        [--backend services|embedded|both]

For each backend (PostgreSQL + Redis on 127.0.0.1, and the embedded
default: SQLite and Celery's filesystem broker), two servers run at once,
each under uvicorn as `itemflow api` runs (one process, the same log level):

- the minimal handler (this file, re-invoked with --serve-minimal PORT):
  `POST /items/{item_id}/upload` streams the multipart part `file` to a
  new file on disk with python-multipart's streaming parser (the library
  and the way api/multipart.py uses it), inserts one row with one
  SQLAlchemy Core statement (into the backend's PostgreSQL database, or a
  SQLite file of its own in WAL mode with synchronous=NORMAL, as itemflow's)
  and answers 200 with a little JSON. No authentication, no checks;
- the floor (the same file, re-invoked with --serve-minimal PORT --floor):
  the minimal handler plus the least that any implementation of the upload
  contract must add, written by hand with SQLAlchemy Core: in one
  transaction the item's row updated with its file (an UPDATE ... RETURNING
  that gives the answer), its pending jobs voided (a DELETE) and a job's row
  inserted, then the job's message sent with itemflow's own send (Celery's
  `send_task`, the stack's way). Still no authentication, no ownership
  check, no post-processor lookup, no annotations or splits in the answer:
  what it costs bounds from below what itemflow's route can cost;
- `itemflow api` (no worker: the jobs' messages just queue), for a user
  with a dataset that has bench/noop.py's no-op post-processor, so that
  each upload does all it does in real use: the key check, the item's
  lookup, the file streamed to storage, the item updated, a job created
  and its message sent.

The same body (the same bytes, file name and boundary, built once) goes to
a new item per upload, from --clients threads with a keep-alive HTTP/1.1
connection each (a few lines of sockets: httpx's CPU time would hold back
the faster server on this 2-core machine); the servers take turns, minimal,
floor, itemflow, for --rounds rounds after a warm-up (4 uploads per client
each). Printed per server: uploads/s, best and median over the rounds; CPU
time per upload (user + system) of the server process (from /proc: less
sensitive to the neighbours than a rate; PostgreSQL's own is not in it)
and of this process, the load; and the ratios itemflow / minimal and
floor / minimal. The goal: itemflow at least 0.5 x the minimal handler;
the floor's ratio says whether any implementation could reach it.
Afterwards the rows are counted: one per upload in the minimal table, one
job per upload in the floor's and in itemflow's.

Each backend gets a database (or var dir) and queues of its own (see
bench/engine.py's `environment`), removed at the end.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    insert,
    text,
    update,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.engine import (  # noqa: E402
    cpu_seconds,
    environment,
    free_port,
    itemflow,
    stop,
    upload_targets,
    wait_for_http,
)
from shared import queue  # noqa: E402

GOAL = 0.5
FILE_NAME = "note.txt"
CONTENT = b"Alice met Bob in Paris.\n"
BOUNDARY = "itemflow-bench-uploads"
BODY = (
    (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{FILE_NAME}"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    + CONTENT
    + f"\r\n--{BOUNDARY}--\r\n".encode()
)
BODY_HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
SERVERS = ("minimal", "floor", "itemflow")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=1000, help="per server and round")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backend", choices=["services", "embedded", "both"], default="both")
    parser.add_argument("--serve-minimal", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_minimal is not None:
        serve_minimal(args.serve_minimal, args.floor)
        return 0
    backends = ["services", "embedded"] if args.backend == "both" else [args.backend]
    for backend in backends:
        with environment(backend) as env:
            report(backend, measure(env, args))
    return 0


# --- the minimal handler ------------------------------------------------------

metadata = MetaData()
uploads_table = Table(
    "bench_minimal_uploads",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("item_id", String(36), nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("file_size", Integer, nullable=False),
)
# The floor's items (made before the run, as itemflow's are) and jobs.
floor_items = Table(
    "bench_floor_items",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("file_key", String(32), nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("file_size", Integer, nullable=False),
    Column("version", Integer, nullable=False),
)
floor_jobs = Table(
    "bench_floor_jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("item_id", String(36), nullable=False, index=True),
    Column("status", String(16), nullable=False),
)


@dataclass
class Parts:
    """What python-multipart's callbacks have seen of the body so far."""

    header_field: bytes = b""
    header_value: bytes = b""
    disposition: bytes = b""
    in_file: bool = False
    file_name: str = ""
    chunks: list[bytes] = field(default_factory=list)


def file_parser(content_type: str, parts: Parts) -> MultipartParser:
    """A streaming parser that collects the `file` part's bytes in
    `parts.chunks` as they arrive."""
    _, params = parse_options_header(content_type)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        parts.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        parts.header_value += data[start:end]

    def on_header_end() -> None:
        if parts.header_field.lower() == b"content-disposition":
            parts.disposition = parts.header_value
        parts.header_field = parts.header_value = b""

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(parts.disposition)
        parts.in_file = disposition.get(b"name") == b"file"
        if parts.in_file:
            parts.file_name = disposition.get(b"filename", b"").decode("utf-8", "replace")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if parts.in_file:
            parts.chunks.append(data[start:end])

    callbacks = {
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
    }
    return MultipartParser(params[b"boundary"], callbacks)  # type: ignore[arg-type]


def minimal_app(database_url: str, files_dir: Path, floor: bool = False) -> Starlette:
    engine = minimal_engine(database_url)
    metadata.create_all(engine)
    files_dir.mkdir(parents=True, exist_ok=True)

    async def upload(request: Request) -> JSONResponse:
        parts = Parts()
        parser = file_parser(request.headers["content-type"], parts)
        key = uuid.uuid4().hex
        size = 0
        # Written from the event loop, chunk by chunk, as itemflow's
        # local storage writes.
        with open(files_dir / key, "xb") as out:
            async for chunk in request.stream():
                parser.write(chunk)
                for piece in parts.chunks:
                    size += len(piece)
                    out.write(piece)
                parts.chunks.clear()
            parser.finalize()
        row = {
            "id": key,
            "item_id": request.path_params["item_id"],
            "file_name": parts.file_name,
            "file_size": size,
        }

        def store() -> None:
            with engine.begin() as connection:
                connection.execute(insert(uploads_table), row)

        def store_floor() -> dict[str, Any]:
            item_id, job_id = row["item_id"], str(uuid.uuid4())
            with engine.begin() as connection:
                item = connection.execute(
                    update(floor_items)
                    .where(floor_items.c.id == item_id)
                    .values(
                        file_key=key,
                        file_name=row["file_name"],
                        file_size=size,
                        version=floor_items.c.version + 1,
                    )
                    .returning(*floor_items.c)
                ).one()
                connection.execute(
                    delete(floor_jobs).where(
                        floor_jobs.c.item_id == item_id, floor_jobs.c.status == "pending"
                    )
                )
                connection.execute(
                    insert(floor_jobs), {"id": job_id, "item_id": item_id, "status": "pending"}
                )
            queue.send(
                queue.JobMessage(
                    job_id=job_id,
                    item_id=item_id,
                    post_processor="noop",
                    model_type="classification",
                    model_id="bench-noop",
                )
            )
            return dict(item._mapping)

        if floor:
            return JSONResponse(await run_in_threadpool(store_floor))
        await run_in_threadpool(store)
        return JSONResponse(row)

    return Starlette(routes=[Route("/items/{item_id}/upload", upload, methods=["POST"])])


def minimal_engine(url: str) -> Engine:
    """The same pool size as itemflow's, and on SQLite the same journal and
    durability (WAL, synchronous=NORMAL); nothing else."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=10, max_overflow=20)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def wal(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def serve_minimal(port: int, floor: bool) -> None:
    """Run the minimal app (or the floor) under uvicorn as `itemflow api`
    runs its own."""
    import uvicorn

    app = minimal_app(
        os.environ["BENCH_MINIMAL_DATABASE_URL"],
        Path(os.environ["BENCH_MINIMAL_FILES_DIR"]),
        floor,
    )
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level=os.environ.get("LOG_LEVEL", "WARNING").lower(),
        timeout_graceful_shutdown=10,
        workers=1,
    )


@contextmanager
def minimal_server(env: dict[str, str], floor: bool = False) -> Iterator[tuple[str, int]]:
    """The minimal handler's (or the floor's) base URL and process id."""
    var = Path(env["VAR_DIR"])
    port = free_port()
    name = "floor" if floor else "minimal"
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve-minimal", str(port), *(["--floor"] if floor else [])],
        env={
            **env,
            "BENCH_MINIMAL_DATABASE_URL": database_url(env, f"{name}.db"),
            "BENCH_MINIMAL_FILES_DIR": str(var / f"{name}-files"),
        },
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + "/")
        yield base, server.pid
    finally:
        stop(server)


# --- itemflow -----------------------------------------------------------------


def itemflow_targets(base: str, headers: dict[str, str], count: int, clients: int) -> list[str]:
    """`count` new items' upload URLs, in a dataset with the no-op post-processor."""
    with httpx.Client(base_url=base + "/api/v1", headers=headers, timeout=60) as client:
        urls: list[str] = upload_targets(client, count, clients=clients)
        return urls


def minimal_targets(base: str, count: int) -> list[str]:
    return [f"{base}/items/{uuid.uuid4()}/upload" for _ in range(count)]


def floor_targets(env: dict[str, str], base: str, count: int) -> list[str]:
    """`count` new rows in the floor's items table, and their upload URLs."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    engine = minimal_engine(database_url(env, "floor.db"))
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(floor_items),
                [
                    {"id": item_id, "file_key": "", "file_name": "", "file_size": 0, "version": 1}
                    for item_id in ids
                ],
            )
    finally:
        engine.dispose()
    return [f"{base}/items/{item_id}/upload" for item_id in ids]


# --- measuring ----------------------------------------------------------------


@dataclass
class Server:
    name: str
    pid: int
    headers: dict[str, str]
    urls: list[str]  # not yet uploaded to
    rates: list[float] = field(default_factory=list)  # uploads per second, per round
    cpu: list[float] = field(default_factory=list)  # server CPU seconds per upload, per round
    client_cpu: list[float] = field(default_factory=list)  # this process's, likewise

    def take(self, count: int) -> list[str]:
        taken, self.urls = self.urls[:count], self.urls[count:]
        return taken


class Uploader:
    """Uploads BODY over one keep-alive HTTP/1.1 connection, written by hand:
    a load generator that costs a fraction of httpx's CPU time, which on a
    2-core machine would hold back the faster server."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        address = urlsplit(base)
        host, port = address.hostname or "127.0.0.1", address.port or 80
        self.socket = socket.create_connection((host, port))
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.answers = self.socket.makefile("rb")
        fields = {"Host": f"{host}:{port}", **headers, **BODY_HEADERS}
        fields["Content-Length"] = str(len(BODY))
        self.head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())

    def post(self, path: str) -> None:
        self.socket.sendall(f"POST {path} HTTP/1.1\r\n{self.head}\r\n".encode() + BODY)
        status = self.answers.readline()
        length = 0
        while (line := self.answers.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        answer = self.answers.read(length)
        if status.split(b" ")[1:2] != [b"200"]:
            raise RuntimeError(f"{path}: {status!r} {answer[:300]!r}")

    def close(self) -> None:
        self.answers.close()
        self.socket.close()


def upload_all(urls: list[str], headers: dict[str, str], clients: int) -> float:
    """Upload BODY to every URL from `clients` threads; the seconds it took."""
    if not urls:
        return 0.0
    base = urlsplit(urls[0])
    uploaders = [Uploader(f"{base.scheme}://{base.netloc}", headers) for _ in range(clients)]
    paths = [urlsplit(url).path for url in urls]

    def send(index: int) -> None:
        for path in paths[index::clients]:
            uploaders[index].post(path)

    try:
        with ThreadPoolExecutor(clients) as pool:
            started = time.perf_counter()
            list(pool.map(send, range(clients)))
            return time.perf_counter() - started
    finally:
        for uploader in uploaders:
            uploader.close()


def one_round(server: Server, count: int, clients: int) -> None:
    before, client_before = cpu_seconds(server.pid), time.process_time()
    seconds = upload_all(server.take(count), server.headers, clients)
    server.cpu.append((cpu_seconds(server.pid) - before) / count)
    server.client_cpu.append((time.process_time() - client_before) / count)
    server.rates.append(count / seconds)


def measure(env: dict[str, str], args: argparse.Namespace) -> dict[str, Server]:
    warm_up = 4 * args.clients
    needed = warm_up + args.rounds * args.uploads
    with (
        minimal_server(env) as (minimal_base, minimal_pid),
        minimal_server(env, floor=True) as (floor_base, floor_pid),
        itemflow(env, "uploads", worker=False) as api,
    ):
        servers = {
            "minimal": Server("minimal", minimal_pid, {}, minimal_targets(minimal_base, needed)),
            "floor": Server("floor", floor_pid, {}, floor_targets(env, floor_base, needed)),
            "itemflow": Server(
                "itemflow",
                api.api,
                api.headers,
                itemflow_targets(api.base, api.headers, needed, args.clients),
            ),
        }
        for server in servers.values():
            upload_all(server.take(warm_up), server.headers, args.clients)
        for _ in range(args.rounds):
            for name in SERVERS:
                one_round(servers[name], args.uploads, args.clients)
    check_rows(env, needed)
    return servers


def database_url(env: dict[str, str], sqlite_file: str) -> str:
    """The backend's PostgreSQL database, or a SQLite file in its var dir."""
    return env.get("DATABASE_URL") or f"sqlite:///{Path(env['VAR_DIR']) / sqlite_file}"


def check_rows(env: dict[str, str], expected: int) -> None:
    """Every upload did its work: a row in the minimal table, a job in the
    floor's and in itemflow's."""
    counted = {
        "minimal": (database_url(env, "minimal.db"), "bench_minimal_uploads"),
        "floor": (database_url(env, "floor.db"), "bench_floor_jobs"),
        "itemflow": (database_url(env, "itemflow.db"), "post_processor_jobs"),
    }
    for server, (url, table) in counted.items():
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                found = connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
        finally:
            engine.dispose()
        if found != expected:
            raise RuntimeError(f"{server}: {found} rows in {table}, expected {expected}")


def report(backend: str, servers: dict[str, Server]) -> None:
    print(f"\n== {backend} ==", flush=True)
    for server in servers.values():
        rounds = ", ".join(f"{rate:.0f}" for rate in server.rates)
        print(
            f"{server.name + ':':10} best {max(server.rates):6.1f} uploads/s, "
            f"median {statistics.median(server.rates):6.1f}  (rounds: {rounds}); "
            f"CPU ms/upload: server {statistics.median(server.cpu) * 1000:.2f}, "
            f"client {statistics.median(server.client_cpu) * 1000:.2f}"
        )
    minimal = servers["minimal"]
    for name in ("floor", "itemflow"):
        server = servers[name]
        best = max(server.rates) / max(minimal.rates)
        median = statistics.median(server.rates) / statistics.median(minimal.rates)
        cpu = statistics.median(minimal.cpu) / statistics.median(server.cpu)
        verdict = "met" if best >= GOAL else "NOT met"
        print(
            f"{name} / minimal: best {best:.2f} x, median {median:.2f} x, "
            f"by server CPU per upload {cpu:.2f} x  (goal >= {GOAL} x: {verdict})",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())

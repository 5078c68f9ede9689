"""PostgreSQL stopped under a running installation: the API answers 503
problem+json on every route and keeps no upload it cannot record; once the
database is back, everything recovers without restarting anything.

The module starts a PostgreSQL cluster of its own (the shared one serves
other test runs and must stay up), and the API, two workers and the reaper
as processes on it. The cluster is then stopped the hard way (an immediate
shutdown, as a crash would) and started again on the same port and data.

One worker serves the quick jobs: it is idle through the outage, so the job
after it runs on a pooled connection opened before it. The other runs a job
that is in flight when the database goes away, and then receives the message
of a job queued behind it, which it cannot claim; once the database is back
the worker's own retries of both messages run them: the first takes its
run's claim over (its outcome was never written), without counting another
attempt, and the second claims its job.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.builders import (
    item_path,
    make_annotation,
    make_dataset,
    make_item,
    make_label,
    make_post_processor,
    make_split,
    ok,
    problem,
    upload,
    version_path,
)
from tests.conftest import BACKEND, VAR_DIR
from tests.faults.plugins import pid_file
from tests.faults.stack import LEASES, children_of, the_job, wait_for_status
from tests.fixtures import (
    free_port,
    itemflow,
    spawn,
    stop,
    wait_for_http,
    wait_for_worker,
    wait_until,
)

pytestmark = pytest.mark.skipif(
    BACKEND != "services",
    reason="the embedded backend has no database server to stop: SQLite runs inside each process",
)

# How long the in-flight job's model runs: it finishes while the database is down.
STALL_SECONDS = 3
OWN_VAR_DIR = VAR_DIR / "pg-outage"
# Celery's log line for a task whose database error sends its message again.
RETRIED = re.compile(r"run_post_processor\[([0-9a-f-]+)\] retry: Retry in \S+: OperationalError")
ENV = {
    "POST_PROCESSORS": os.environ["POST_PROCESSORS"] + ",tests.faults.plugins:StallingModel",
    "QUEUE_NAME": os.environ["QUEUE_NAME"] + "-pg-outage",
    # Its own files directory, so that what the outage leaves there is seen.
    "VAR_DIR": str(OWN_VAR_DIR),
    **LEASES,
    # Every route asks the database, if only for the key: no key proved a
    # moment before lets /applications (which needs nothing else) answer.
    "API_KEY_CACHE_SECONDS": "0",
    # One pool process per worker: the job after the outage runs in the
    # very process (and on the very connection pool) that ran the one before.
    "WORKER_CONCURRENCY": "1",
    "PRELOAD_MODELS": "false",
}
FILES_DIR = OWN_VAR_DIR / "files"
# The routes that need no database answer as ever; every other one says 503.
# /metrics serves what it can read (the queues, the counts), without the
# jobs' series.
WITHOUT_DATABASE = {
    ("get", "/healthz"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/docs"),
    ("get", "/api/v1/docs/init.js"),
    ("get", "/metrics"),
}
# A 503 must come at once, not after a connect attempt hangs.
QUICK_SECONDS = 5.0


# -- a PostgreSQL cluster of our own ------------------------------------------


def server_binary(name: str) -> str:
    """A PostgreSQL server program: where pg_config says, else on PATH."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        bindir = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=True
        ).stdout.strip()
        if (Path(bindir) / name).exists():
            return str(Path(bindir) / name)
    found = shutil.which(name)
    if found is None:
        message = f"the PostgreSQL server programs ({name}) are not installed here"
        if os.environ.get("ITEMFLOW_TEST_REQUIRE_SERVICES"):
            raise RuntimeError(message)
        pytest.skip(message)
    return found


@dataclass
class Cluster:
    root: Path
    port: int
    owner: str | None  # the OS user to run the server as; None: ourselves

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/itemflow"

    def run(self, *command: str, timeout: float = 60) -> None:
        if self.owner is not None:
            # initdb and the server refuse to run as root.
            runuser = shutil.which("runuser")
            if runuser:
                command = (runuser, "-u", self.owner, "--", *command)
            else:
                setpriv = shutil.which("setpriv")
                assert setpriv, "running as root, and neither runuser nor setpriv is here"
                entry = pwd.getpwnam(self.owner)
                command = (
                    setpriv,
                    f"--reuid={entry.pw_uid}",
                    f"--regid={entry.pw_gid}",
                    "--init-groups",
                    *command,
                )
        done = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            server_log = self.root / "server.log"
            tail = server_log.read_text()[-3000:] if server_log.exists() else ""
            raise RuntimeError(f"{command[-1]} failed:\n{done.stdout}{done.stderr}\n{tail}")

    def init(self) -> None:
        self.run(
            server_binary("initdb"),
            "--pgdata",
            str(self.data),
            "--username=postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        # Appended as root keeps the file's owner. Durability is not under
        # test (an immediate stop keeps what the kernel has): no fsync. But
        # commits stay synchronous, or a stop could lose acknowledged ones.
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\n"
                "fsync = off\n"
                "full_page_writes = off\n"
                "shared_buffers = 16MB\n"
                "max_connections = 100\n"
            )

    def start(self) -> None:
        self.run(
            server_binary("pg_ctl"),
            "--pgdata",
            str(self.data),
            "--log",
            str(self.root / "server.log"),
            "--wait",
            "--timeout=30",
            "start",
        )

    def stop(self, mode: str = "immediate") -> None:
        self.run(server_binary("pg_ctl"), "--pgdata", str(self.data), f"--mode={mode}", "stop")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def kill(self) -> None:
        """The last resort of the finalizer: the postmaster this cluster
        started (its pid is the first line of its pid file)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGQUIT)
        except (OSError, ValueError, IndexError):
            pass


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    owner = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="itemflow-pg-outage-"))
    try:
        if owner is not None:
            entry = pwd.getpwnam(owner)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        db = Cluster(root, free_port(), owner)
        db.init()
        db.start()
        try:
            import psycopg

            with psycopg.connect(
                f"host=127.0.0.1 port={db.port} user=postgres dbname=postgres", autocommit=True
            ) as connection:
                connection.execute("CREATE DATABASE itemflow")
            yield db
        finally:
            if db.running:
                try:
                    db.stop()
                except (RuntimeError, subprocess.TimeoutExpired):
                    db.kill()
                    time.sleep(1)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def sql(db: Cluster, query: str, *params: Any) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(
        f"host=127.0.0.1 port={db.port} user=postgres dbname=itemflow", connect_timeout=5
    ) as connection:
        return connection.execute(query, params).fetchall()


# -- the installation on it ----------------------------------------------------


@dataclass
class Stack:
    db: Cluster
    base: str
    client: httpx.Client
    api: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]  # quick jobs (model type ner)
    stall_worker: subprocess.Popen[bytes]  # the in-flight job (classification)
    reaper: subprocess.Popen[bytes]

    @property
    def workers(self) -> list[subprocess.Popen[bytes]]:
        return [self.worker, self.stall_worker]

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [self.api, *self.workers, self.reaper]


@pytest.fixture(scope="module")
def stack(cluster: Cluster) -> Iterator[Stack]:
    env = {**ENV, "DATABASE_URL": cluster.url}
    itemflow("migrate", env=env)
    key = itemflow("users", "create", f"outage-{os.urandom(4).hex()}", env=env).strip()
    port = free_port()
    processes = []
    try:
        api = spawn("api", log_name="pg-outage-api", API_PORT=str(port), **env)
        processes.append(api)
        worker = spawn(
            "worker", "--name=pg-outage@%h", "--queues=ner", log_name="pg-outage-worker", **env
        )
        processes.append(worker)
        stall_worker = spawn(
            "worker",
            "--name=pg-outage-stall@%h",
            "--queues=classification",
            log_name="pg-outage-stall-worker",
            # A lease as long as a user's: the reaper leaves the job to the
            # worker's retry through the outage.
            **{**env, "JOB_LEASE_SECONDS": "60", "JOB_HEARTBEAT_SECONDS": "15"},
        )
        processes.append(stall_worker)
        reaper = spawn("reaper", log_name="pg-outage-reaper", **env)
        processes.append(reaper)
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + "/healthz")
        wait_for_worker(worker, "pg-outage-worker")
        wait_for_worker(stall_worker, "pg-outage-stall-worker")
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base + "/api/v1", headers=headers, timeout=30) as client:
            yield Stack(cluster, base, client, api, worker, stall_worker, reaper)
    finally:
        for process in processes:
            stop(process)


def log_of(name: str) -> str:
    """The log of one of the processes: api, worker, stall-worker or reaper."""
    return (VAR_DIR / f"pg-outage-{name}.log").read_text()


def stored_files() -> set[str]:
    return {path.name for path in FILES_DIR.iterdir()} if FILES_DIR.exists() else set()


# -- requests ------------------------------------------------------------------


def fill(path: str, ids: dict[str, str]) -> str:
    # Splits and labels share one route table, with `row_id` for either.
    row = ids["split_id"] if "/splits/{row_id}" in path else ids["label_id"]
    for name, value in {**ids, "row_id": row}.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"no id for a parameter of {path}"
    return path


def json_body(document: dict[str, Any], operation: dict[str, Any], ids: dict[str, str]) -> Any:
    """A valid body for the operation, so that only the outage can refuse it."""
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    ref = content["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    values = {
        "name": "written during the outage",
        "model_type": "classification",
        "label_id": ids["label_id"],
        "item_id": ids["item_id"],
        "api_key": "sk-written-during-the-outage",
        "status": "failed",  # a bulk retry's
    }
    body = {name: value for name, value in values.items() if name in schema["properties"]}
    missing = set(schema.get("required", ())) - set(body)
    assert not missing, f"no value for {missing} in {ref}"
    return body


def send(client: httpx.Client, method: str, url: str, body: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    if method == "post" and url.endswith("/upload"):
        response = client.post(url, files={"file": ("outage.txt", b"written during the outage\n")})
    else:
        response = client.request(method.upper(), url, json=body)
    return response, time.monotonic() - started


class HeldUpload:
    """An upload whose body stops halfway until released: it passes the key
    and item checks while the database is up and ends after it went down."""

    def __init__(self, base: str, key_header: str, path: str) -> None:
        self.release = threading.Event()
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None
        boundary = uuid.uuid4().hex
        head = (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="held.txt"\r\n'
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        def body() -> Iterator[bytes]:
            yield head + b"the first half, sent while the database is up\n"
            self.release.wait(30)
            yield b"the second half, sent after it went down\n" + tail

        def run() -> None:
            try:
                with httpx.Client(base_url=base, timeout=30) as client:
                    self.response = client.post(
                        path,
                        content=body(),
                        headers={
                            "Authorization": key_header,
                            "Content-Type": f"multipart/form-data; boundary={boundary}",
                        },
                    )
            except BaseException as error:  # reported by finish()
                self.error = error

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def finish(self) -> httpx.Response:
        self.release.set()
        self.thread.join(timeout=30)
        if self.error is not None:
            raise self.error
        assert self.response is not None, "the held upload got no answer"
        return self.response


# -- the test --------------------------------------------------------------------


def test_postgres_outage_answers_503_everywhere_and_recovers_without_restarts(
    stack: Stack,
) -> None:
    api, db = stack.client, stack.db
    # Served without the database, but read before the outage all the same.
    document = ok(api.get("/openapi.json"))

    # Baseline: a job completes; every kind of resource exists, for real ids.
    dataset = make_dataset(api)
    # The slow test model without a sleep: done at once.
    quick = make_post_processor(api, dataset, name="quick", model_type="ner", model_id="test-slow")
    done = make_item(api, dataset)
    ok(upload(api, dataset, done, b"some text\n", "done.txt"))
    baseline_job = wait_for_status(api, dataset, done, "completed", timeout=20)
    split = make_split(api, dataset)
    label = make_label(api, dataset)
    annotation = make_annotation(api, dataset, label, done)
    refused = make_item(api, dataset, name="upload refused in the outage")
    held_item = make_item(api, dataset, name="upload cut by the outage")
    ids = {
        "dataset_id": dataset["id"],
        "version_id": dataset["versions"][0]["id"],
        "item_id": done["id"],
        "split_id": split["id"],
        "label_id": label["id"],
        "annotation_id": annotation["id"],
        "post_processor_id": quick["id"],
        "job_id": baseline_job["id"],
        "provider": "openai",
        "format": "folders",
    }
    # A job running when the database goes away: its model finishes in the
    # outage and its result cannot be written.
    stalled_dataset = make_dataset(api, name="stalled")
    stalling = make_post_processor(
        api,
        stalled_dataset,
        name="stalling",
        model_type="classification",
        model_id="test-stall",
        output_target="annotations",
        prompt=json.dumps({"sleep": STALL_SECONDS, "labels": {}}),
    )
    stalled = make_item(api, stalled_dataset)
    ok(upload(api, stalled_dataset, stalled, b"some text\n", "stalled.txt"))
    wait_until(pid_file(stalling["id"], stalled["id"]).exists, 15, "the stalling model started")
    [stalled_job] = ok(api.get(item_path(stalled_dataset, stalled) + "/jobs"))
    # And one queued behind it: its message is delivered in the outage.
    queued = make_item(api, stalled_dataset, name="queued behind the stalled job")
    ok(upload(api, stalled_dataset, queued, b"some text\n", "queued.txt"))
    [queued_job] = ok(api.get(item_path(stalled_dataset, queued) + "/jobs"))
    pools = {process.pid: children_of(process.pid) for process in stack.workers}
    files_before = stored_files()

    held = HeldUpload(
        stack.base + "/api/v1",
        api.headers["Authorization"],
        item_path(dataset, held_item) + "/upload",
    )
    # Its file is being written to storage: it got past every check.
    wait_until(lambda: stored_files() - files_before, 10, "the held upload is staged")

    # -- the outage ------------------------------------------------------------
    stopping = time.monotonic()
    db.stop()
    stopped = time.monotonic()
    wait_until(lambda: api.get("/datasets").status_code == 503, 10, "the API notices the outage")
    detected = time.monotonic()

    # The upload that was let in before the outage cannot be recorded: its
    # file goes, and the client is told.
    problem(held.finish(), 503)
    assert stored_files() == files_before, "the cut upload left its file behind"

    slowest = 0.0
    answered = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            url = fill(path, ids)
            # The client's base URL holds the prefix; /healthz and /readyz are outside it.
            url = url.removeprefix("/api/v1") if url.startswith("/api/v1/") else stack.base + url
            response, seconds = send(api, method, url, json_body(document, operation, ids))
            answered += 1
            slowest = max(slowest, seconds)
            where = f"{method.upper()} {path}"
            assert seconds < QUICK_SECONDS, f"{where} took {seconds:.1f} s"
            if (method, path) in WITHOUT_DATABASE:
                assert response.status_code == 200, f"{where}: {response.text}"
                if path == "/metrics":
                    assert "itemflow_queue_length{" in response.text
                    assert "itemflow_jobs{" not in response.text
                continue
            body = problem(response, 503)  # problem+json, no traceback
            text = response.text.lower()
            for leak in ("psycopg", "sqlalchemy", "connection", str(db.port)):
                assert leak not in text, f"{where} names {leak!r}: {response.text}"
            if path == "/readyz":
                assert (body["database"], body["broker"]) == ("unreachable", "ok"), body
            else:
                assert response.headers.get("retry-after") == "5", where
    assert answered >= 40, answered  # the document did list the routes

    # A whole upload arriving in the outage is refused before a byte is stored.
    problem(upload(api, dataset, refused, b"never kept\n", "refused.txt"), 503)
    assert stored_files() == files_before

    # The in-flight job's model ends in the outage and writing its result
    # fails; then the queued job's message arrives and claiming it fails.
    # Both messages are sent again with back-off; the worker lives on.
    wait_until(
        lambda: len(set(RETRIED.findall(log_of("stall-worker")))) >= 2,
        STALL_SECONDS + 10,
        "the stalled job's result write and the queued job's claim fail",
    )
    outage_seconds = time.monotonic() - stopping
    for process in stack.processes:
        assert process.poll() is None
    assert "reaper sweep failed" in log_of("reaper")

    # -- the recovery, with every process as it was ----------------------------
    db.start()
    started = time.monotonic()
    wait_until(lambda: api.get("/datasets").status_code == 200, 30, "the API answers again")
    recovered = time.monotonic() - started
    ready = httpx.get(stack.base + "/readyz", timeout=10)
    assert ready.status_code == 200, ready.text

    # Neither upload was kept: no file, no jobs, the items as they were.
    for item in (refused, held_item):
        again = ok(api.get(item_path(dataset, item)))
        assert (again["version"], again["extension"]) == (item["version"], item["extension"])
        assert ok(api.get(item_path(dataset, item) + "/jobs")) == []
    outage_items = [uuid.UUID(refused["id"]), uuid.UUID(held_item["id"])]
    assert sql(
        db,
        "SELECT (SELECT count(*) FROM dataset_items WHERE id = ANY(%s) AND file_key IS NOT NULL),"
        " (SELECT count(*) FROM post_processor_jobs WHERE dataset_item_id = ANY(%s))",
        outage_items,
        outage_items,
    ) == [(0, 0)]
    assert stored_files() == files_before
    # And the writes refused in the outage changed nothing.
    for path in (
        f"/datasets/{dataset['id']}",
        f"{version_path(dataset)}/splits/{split['id']}",
        f"{version_path(dataset)}/labels/{label['id']}",
        f"/datasets/{dataset['id']}/post-processors/{quick['id']}",
    ):
        assert ok(api.get(path))["name"] != "written during the outage", path
    assert ok(api.get(item_path(dataset, done)))["annotations"] == [annotation]
    assert the_job(api, dataset, done) == baseline_job

    # A new upload's job completes, in the same worker and pool process, on
    # the connection that process pooled before the outage.
    ok(upload(api, dataset, refused, b"after the outage\n", "after.txt"))
    uploaded = time.monotonic()
    after = wait_for_status(api, dataset, refused, "completed", timeout=20)
    job_after = time.monotonic() - uploaded
    assert after["attempts"] == 1, after

    # The worker's retry takes over the claim of the run whose result was
    # lost in the outage, and runs the job again as the same attempt.
    # Its back-off doubles from 2 s up to 60 s: one more wait at the most.
    completed = wait_for_status(api, stalled_dataset, stalled, "completed", timeout=75)
    stalled_done = time.monotonic() - started
    # The queued job's message came in the outage: the worker sent it again
    # with back-off, not waiting for the reaper's sweep for quiet jobs (10
    # min, the default here). The failed claim cost it no attempt.
    # Its back-off doubles from 2 s up to 60 s: one more wait at the most.
    queued_done = wait_for_status(api, stalled_dataset, queued, "completed", timeout=75)
    resent = time.monotonic() - started
    assert queued_done["attempts"] == 1, queued_done
    assert completed["attempts"] == 1, completed
    assert json.loads(completed["result"])["runs"] == 2  # the lost run and this one
    assert f"event=job.attempt_abandoned job_id={stalled_job['id']}" not in log_of("reaper")

    # Nothing restarted, no pool process replaced, no crash loop.
    for process in stack.processes:
        assert process.poll() is None
    assert {process.pid: children_of(process.pid) for process in stack.workers} == pools
    for name in ("worker", "stall-worker"):
        worker_log = log_of(name)
        assert worker_log.count(" ready.") == 1, worker_log[-3000:]
        for crash in ("WorkerLostError", "exited with"):
            assert crash not in worker_log, worker_log[-3000:]
    assert "event=job.completed job_id=" + after["id"] in log_of("worker")
    # Every database error in the API became a 503, none a 500 with a trace.
    assert "Traceback" not in log_of("api"), log_of("api")[-3000:]

    print(
        f"\nPostgreSQL stopped in {stopped - stopping:.2f} s; first 503 {detected - stopped:.2f} s"
        f" later; {answered} operations answered in the outage, the slowest in"
        f" {slowest * 1000:.0f} ms; outage {outage_seconds:.1f} s"
        f"\nPostgreSQL started -> API 200 after {recovered:.2f} s; a new upload's job completed"
        f" {job_after:.2f} s after it; the stalled job, resumed by the worker's retry, completed"
        f" {stalled_done:.1f} s after the start; the job queued behind it, retried by the worker,"
        f" {resent:.1f} s after"
    )

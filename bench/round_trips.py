"""The database round trips itemflow makes per upload and per job, counted.

    .venv/bin/python bench/round_trips.py [--uploads 50] [--jobs 50]
        [--backend services|embedded|both]

For each backend (PostgreSQL + Redis on 127.0.0.1, and the embedded
default: SQLite and Celery's filesystem broker), in a process of its own
whose environment is that backend's (settings are read once, from the
environment: see bench/engine.py's `environment`), with bench/noop.py's
no-op model as the post-processor:

- per upload: the API app runs in process, behind Starlette's test client
  (no network), for a user made with `users.create_user`. A dataset with
  the no-op post-processor and its items are made first; after 2 warm-up
  uploads (a process's first requests fill its caches), --uploads uploads
  of one small text file, each to a new item (which creates a job and sends
  its message to the broker; no worker takes it);
- per job: `execution.run_job` in this process, as a worker runs it, for
  --jobs of the pending jobs those uploads made (after 2 warm-up jobs).
  Statements from the lease's heartbeat thread would not be counted (it
  fires every JOB_HEARTBEAT_SECONDS, 15 s, so never in a job this short).

Counted with SQLAlchemy events on `shared.db.get_engine()`: statements
(`before_cursor_execute`; on SQLite that includes itemflow's BEGIN
IMMEDIATE), transactions begun and committed or rolled back (`begin`,
`commit`, `rollback`), and connections checked out of the pool (`checkout`:
on PostgreSQL each is a pre-ping, a round trip of its own). psycopg sends
BEGIN before a transaction's first statement and COMMIT at its end, each a
round trip, so on PostgreSQL the round trips are about statements + begins
+ commits + rollbacks + checkouts; they are also counted on the wire, from
libpq's trace of every connection (one ReadyForQuery from the server per
round trip). Printed: the means, the events of one upload and one job in
order (each statement's first 80 characters), and what the API key lookup
costs when the key cache (API_KEY_CACHE_SECONDS) does not hide it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.engine import environment, upload_targets  # noqa: E402
from bench.uploads import BODY, BODY_HEADERS  # noqa: E402

WARM_UP = 2
HEARTBEAT_THREAD = "lease-"  # shared/services/execution.py names it lease-<job id>
KINDS = ("statement", "begin", "commit", "rollback", "checkout")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--backend", choices=["services", "embedded", "both"], default="both")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process:
        measure(args)
        return 0
    backends = ["services", "embedded"] if args.backend == "both" else [args.backend]
    for backend in backends:
        with environment(backend) as env:
            print(f"\n== {backend} ==", flush=True)
            # A process per backend: settings, engine and caches are read
            # once per process, from its environment.
            subprocess.run(
                [sys.executable, __file__, "--in-process",
                 "--uploads", str(args.uploads), "--jobs", str(args.jobs)],
                env={**env, "POST_PROCESSORS": "bench.noop:NoopModel"}, cwd=ROOT, check=True,
            )  # fmt: skip
    return 0


# --- counting -----------------------------------------------------------------

Event = tuple[str, str]  # (kind, the statement's first 80 characters)


@dataclass
class Window:
    """What the engine did during a block: its events in order and, on
    PostgreSQL, the round trips libpq saw."""

    events: list[Event] = field(default_factory=list)
    wire: int | None = None


class WireTrace:
    """libpq's trace of each connection the engine opens (PostgreSQL, with
    psycopg): every round trip ends with the server's ReadyForQuery."""

    def __init__(self, engine: Engine, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.traced: list[list[Any]] = []  # [psycopg's PGconn, trace file, lines counted]
        event.listen(engine, "connect", self._connect)

    def _connect(self, dbapi_connection: Any, _record: Any) -> None:
        path = self.folder / f"{len(self.traced)}.trace"
        path.touch()
        self.traced.append([dbapi_connection.pgconn, path, 0])
        self._trace(dbapi_connection.pgconn, path)

    @staticmethod
    def _trace(pgconn: Any, path: Path) -> None:
        from psycopg import pq

        # libpq writes through a FILE* of its own, closed by untrace().
        pgconn.trace(os.open(path, os.O_WRONLY | os.O_APPEND))
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)

    def round_trips(self) -> int:
        """Round trips since the last call; call it while no connection is
        in use (untrace() flushes the trace, trace() starts it again)."""
        total = 0
        for entry in self.traced:
            pgconn, path, counted = entry
            if pgconn.status != 0:  # closed meanwhile: its trace is complete
                continue
            pgconn.untrace()
            lines = path.read_text().splitlines()
            total += sum(1 for line in lines[counted:] if "\tReadyForQuery\t" in line)
            entry[2] = len(lines)
            self._trace(pgconn, path)
        return total


@dataclass
class Tally:
    """What the engine does while `recording`."""

    wire: WireTrace | None = None
    recording: bool = False
    events: list[Event] = field(default_factory=list)
    heartbeat: int = 0  # statements from a lease's heartbeat thread, left out

    def add(self, kind: str, statement: str = "") -> None:
        if not self.recording:
            return
        if threading.current_thread().name.startswith(HEARTBEAT_THREAD):
            self.heartbeat += 1
            return
        self.events.append((kind, " ".join(statement.split())[:80]))

    @contextmanager
    def record(self) -> Iterator[Window]:
        """What the block did, in a Window filled when it ends."""
        window = Window()
        if self.wire is not None:
            self.wire.round_trips()
        self.events, self.recording = [], True
        try:
            yield window
        finally:
            self.recording = False
            window.events = self.events
            if self.wire is not None:
                window.wire = self.wire.round_trips()


def listen(engine: Engine, var: Path) -> Tally:
    postgres = engine.dialect.name == "postgresql"
    tally = Tally(WireTrace(engine, var / "wire") if postgres else None)

    def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        tally.add("statement", sql)

    event.listen(engine, "before_cursor_execute", statement)
    for kind in ("begin", "commit", "rollback"):
        event.listen(engine, kind, lambda _conn, kind=kind: tally.add(kind))
    event.listen(engine.pool, "checkout", lambda *_: tally.add("checkout"))
    return tally


def summary(window: Window, count: int) -> str:
    kinds = Counter(kind for kind, _ in window.events)
    mean = {kind: kinds[kind] / count for kind in KINDS}
    line = (
        f"statements {mean['statement']:.1f}, transactions {mean['begin']:.1f} "
        f"(commits {mean['commit']:.1f}, rollbacks {mean['rollback']:.1f}), "
        f"pool checkouts {mean['checkout']:.1f}"
    )
    if window.wire is not None:
        line += (
            f"\n  round trips to PostgreSQL: {window.wire / count:.1f} on the wire (libpq trace); "
            f"statements + begins + commits + rollbacks + checkouts (pre-pings) = "
            f"{sum(mean.values()):.1f}"
        )
    return line


def show(window: Window) -> None:
    for kind, statement in window.events:
        print(f"    {statement}" if kind == "statement" else f"  [{kind}]")
    if window.wire is not None:
        print(f"  ({window.wire} round trips on the wire)")


# --- in process ---------------------------------------------------------------


def measure(args: argparse.Namespace) -> None:
    # Only now: the environment is this backend's.
    from starlette.testclient import TestClient

    from api.app import app
    from shared.db import get_engine
    from shared.settings import get_settings

    tally = listen(get_engine(), get_settings().var_dir)
    uploads = WARM_UP + args.uploads + 2  # one shown, one with the key cache emptied
    with TestClient(app, base_url="http://testserver/api/v1") as client:
        client.headers["Authorization"] = f"Bearer {new_user_key()}"
        urls = upload_targets(client, uploads)
        upload = uploader(client)
        for url in urls[:WARM_UP]:
            upload(url)
        started = time.monotonic()
        with tally.record() as many:
            for url in urls[WARM_UP : WARM_UP + args.uploads]:
                upload(url)
        seconds = time.monotonic() - started
        with tally.record() as one:
            upload(urls[-2])
        uncached = key_lookup_cost(tally, lambda: upload(urls[-1]))
    print(f"per upload (mean of {args.uploads}, after {WARM_UP} warm-up uploads):")
    print("  " + summary(many, args.uploads))
    report_key_lookups(many, args.uploads, seconds, one, uncached)
    print("one upload, in order:")
    show(one)
    measure_jobs(tally, args.jobs)


def new_user_key() -> str:
    import uuid

    from shared.db import session_scope
    from shared.services.users import create_user

    with session_scope() as session:
        _, key = create_user(session, f"round-trips-{uuid.uuid4().hex[:6]}")
    return key


def uploader(client: Any) -> Callable[[str], None]:
    def upload(url: str) -> None:
        client.post(url, content=BODY, headers=BODY_HEADERS).raise_for_status()

    return upload


def key_lookup_cost(tally: Tally, upload: Callable[[], None]) -> Window:
    """What an upload does when its key is not in the key cache."""
    from api.http import key_cache

    key_cache.cache_clear()  # a new, empty cache
    with tally.record() as window:
        upload()
    return window


def report_key_lookups(
    many: Window, uploads: int, seconds: float, cached: Window, uncached: Window
) -> None:
    from shared.settings import get_settings

    lookups = sum(1 for kind, sql in many.events if kind == "statement" and "api_keys" in sql)
    cache = get_settings().api_key_cache_seconds
    hidden = "the cache hid them" if lookups == 0 else "not all hidden by the cache"
    print(
        f"  API key lookups: {lookups} in {uploads} uploads over {seconds:.1f} s "
        f"(API_KEY_CACHE_SECONDS={cache:g}: {hidden})"
    )
    more = Counter(kind for kind, _ in uncached.events)
    more.subtract(kind for kind, _ in cached.events)
    lookup = [sql for kind, sql in uncached.events if kind == "statement" and "api_keys" in sql]
    wire = (
        f", {uncached.wire - cached.wire} round trips"
        if uncached.wire is not None and cached.wire is not None
        else ""
    )
    print(
        f"  with the key not cached, an upload does {more['statement']:+d} statements, "
        f"{more['begin']:+d} transactions, {more['checkout']:+d} checkouts{wire}: {lookup}"
    )


def measure_jobs(tally: Tally, count: int) -> None:
    from sqlalchemy import select

    from shared.db import session_scope
    from shared.models import JobStatus, PostProcessorJob
    from shared.services.execution import RunOutcome, run_job

    with session_scope() as session:
        pending = session.scalars(
            select(PostProcessorJob.id)
            .where(PostProcessorJob.status == JobStatus.PENDING.value)
            .order_by(PostProcessorJob.created_at)
        ).all()
    if len(pending) < WARM_UP + count + 1:
        raise RuntimeError(f"{len(pending)} pending jobs, {WARM_UP + count + 1} needed")

    def run(job_id: Any) -> None:
        outcome = run_job(job_id)
        if outcome.status != RunOutcome.COMPLETED:
            raise RuntimeError(f"job {job_id}: {outcome}")

    for job_id in pending[:WARM_UP]:
        run(job_id)
    with tally.record() as many:
        for job_id in pending[WARM_UP : WARM_UP + count]:
            run(job_id)
    with tally.record() as one:
        run(pending[WARM_UP + count])
    print(f"per job (mean of {count} run_job calls, after {WARM_UP} warm-up jobs):")
    print("  " + summary(many, count))
    print(f"  heartbeat statements left out: {tally.heartbeat}")
    print("one job, in order:")
    show(one)


if __name__ == "__main__":
    sys.exit(main())

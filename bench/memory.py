"""Memory over a long run: the resident memory of the API and of the
worker's processes, sampled as uploads and their jobs go through, to check
that it stays flat (no growth over a 10,000-upload run).

    .venv/bin/python bench/memory.py [--uploads 10000] [--clients 8]
        [--backend services|embedded|both] [--every 1000]

For each backend (PostgreSQL + Redis on 127.0.0.1, and the embedded
default: SQLite and Celery's filesystem broker), `itemflow api` (one
process) and one `itemflow worker` (its prefork pool, of the default
concurrency: the number of CPUs) run as bench/engine.py's end-to-end
measure runs them, for a user with a dataset that has bench/noop.py's
no-op post-processor and --uploads + 1 items, made first. After one upload
has gone through (the worker up, every connection made), the uploads go in
batches of --every, a small text file to each item from --clients threads
(bench/uploads.py's keep-alive socket client), each upload starting one
no-op job. Once the batch's jobs have all run (counted by the no-op
model: BENCH_COUNTER) and a second has passed, the resident memory (VmRSS
in /proc/<pid>/status) is sampled of the API process, the worker's main
process and each of its pool processes (the main process's children, by
the ppid in /proc/*/stat). One line per sample, the first before the first
batch. The processes are this one's children started by engine.py's
`itemflow`, told apart by their command line.

At the end, the growth of each process from the sample after the first
batch (the warm-up) to the last, in MiB and as a percentage, and a
verdict: flat if each grew by less than 5 % and less than 10 MiB. itemflow
sets no worker_max_tasks_per_child (shared/broker.py), so the pool
processes live for the whole run; a pool process replaced all the same (a
pid gone, another come) starts its memory afresh, and is reported.

Each backend gets a database (or var dir) and queues of its own (see
bench/engine.py's `environment`), removed at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.engine import environment, itemflow, upload_one, wait_for_runs  # noqa: E402
from bench.uploads import itemflow_targets, upload_all  # noqa: E402

MAX_PERCENT = 5.0
MAX_MIB = 10.0
SETTLE_SECONDS = 1.0  # after a batch's last job: its run's end is recorded


@dataclass
class Sample:
    uploads: int
    api: float  # MiB
    worker: float  # MiB
    pool: dict[int, float]  # pool process id: MiB


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--backend", choices=["services", "embedded", "both"], default="both")
    parser.add_argument("--every", type=int, default=1000, help="uploads between samples")
    args = parser.parse_args()
    backends = ["services", "embedded"] if args.backend == "both" else [args.backend]
    for backend in backends:
        with environment(backend) as env:
            env.pop("WORKER_CONCURRENCY", None)  # Celery's default, as `itemflow worker`
            env["API_WORKERS"] = "1"  # the server in the process started
            print(f"\n== {backend} ==", flush=True)
            report(measure(env, args))
    return 0


# --- processes and their memory -----------------------------------------------


def rss_mib(pid: int) -> float:
    """The resident memory of a process, VmRSS, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def children(parent: int) -> list[int]:
    """The ids of a process's children, from the ppid in /proc/*/stat."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone meanwhile
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return sorted(found)


def sample(uploads: int, api: int, worker: int) -> Sample:
    pool = {pid: rss_mib(pid) for pid in children(worker)}
    return Sample(uploads, rss_mib(api), rss_mib(worker), pool)


# --- the run ------------------------------------------------------------------


def measure(env: dict[str, str], args: argparse.Namespace) -> list[Sample]:
    counter = Path(env["BENCH_COUNTER"])
    counter.unlink(missing_ok=True)
    samples: list[Sample] = []
    with itemflow(env, "memory") as running:
        base, headers, api, worker = running.base, running.headers, running.api, running.worker
        assert worker is not None
        urls = itemflow_targets(base, headers, args.uploads + 1, args.clients)
        # One upload first: the worker has started and every connection is made.
        upload_one(base, headers, urls.pop())
        wait_for_runs(counter, 1)
        print_header()
        samples.append(settled_sample(0, api, worker))
        done = 0
        while done < args.uploads:
            batch, urls = urls[: args.every], urls[args.every :]
            upload_all(batch, headers, args.clients)
            done += len(batch)
            wait_for_runs(counter, done + 1)
            samples.append(settled_sample(done, api, worker))
    return samples


def settled_sample(uploads: int, api: int, worker: int) -> Sample:
    time.sleep(SETTLE_SECONDS)
    taken = sample(uploads, api, worker)
    print_sample(taken)
    return taken


# --- the figures --------------------------------------------------------------


def print_header() -> None:
    print(
        f"{'uploads':>8} {'API MiB':>8} {'worker MiB':>10}   {'pool MiB, each (pid)':<32}"
        f" {'max':>6} {'sum':>7}",
        flush=True,
    )


def print_sample(taken: Sample) -> None:
    each = "  ".join(f"{mib:6.1f} ({pid})" for pid, mib in taken.pool.items())
    values = list(taken.pool.values()) or [0.0]
    print(
        f"{taken.uploads:>8} {taken.api:8.1f} {taken.worker:10.1f}   {each:<32}"
        f" {max(values):6.1f} {sum(values):7.1f}",
        flush=True,
    )


def growth(name: str, first: float, last: float) -> bool:
    """Print a process's growth; whether it is within the bounds."""
    mib = last - first
    percent = 100 * mib / first if first else float("inf")
    flat = mib < MAX_MIB and percent < MAX_PERCENT
    print(
        f"  {name:<20} {first:7.1f} -> {last:7.1f} MiB: {mib:+6.1f} MiB {percent:+6.1f} %"
        f"{'' if flat else '  GROWS'}"
    )
    return flat


def report(samples: list[Sample]) -> None:
    if len(samples) < 3:
        print("too few samples for a growth (the first batch is the warm-up)")
        return
    first, last = samples[1], samples[-1]
    print(f"growth from {first.uploads} to {last.uploads} uploads:")
    flat = [
        growth("API", first.api, last.api),
        growth("worker main", first.worker, last.worker),
    ]
    for pid in sorted(first.pool.keys() & last.pool.keys()):
        flat.append(growth(f"pool process {pid}", first.pool[pid], last.pool[pid]))
    flat.append(growth("pool, sum", sum(first.pool.values()), sum(last.pool.values())))
    replaced = pool_changes(samples)
    for line in replaced:
        print(f"  pool process replaced: {line}")
    if not replaced:
        print(f"  pool processes: the same {len(last.pool)} throughout (none replaced)")
    bounds = f"each under {MAX_PERCENT:.0f} % and under {MAX_MIB:.0f} MiB"
    verdict = "flat" if all(flat) else "GROWS"
    print(f"verdict: {verdict} ({bounds}, from the sample after the first batch)", flush=True)


def pool_changes(samples: list[Sample]) -> list[str]:
    """The pool processes gone and come between consecutive samples."""
    changes = []
    for before, after in zip(samples, samples[1:], strict=False):
        gone, come = before.pool.keys() - after.pool.keys(), after.pool.keys() - before.pool.keys()
        if gone or come:
            changes.append(f"by {after.uploads} uploads: gone {sorted(gone)}, new {sorted(come)}")
    return changes


if __name__ == "__main__":
    sys.exit(main())

"""`itemflow import PATH --dataset ID`: a folder of files, or the files a
CSV lists, uploaded as a dataset's items through the HTTP API, several at
once, with a progress bar. Run again, it resumes: a file already there (an
item of the same name whose file has the same sha256) is skipped, and an
item left without its file by an interrupted run gets it. A file the API
refuses is listed at the end and never stops the run."""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.jobs_cli import (
    add_api_options,
    api_client,
    has_api_key,
    problem_line,
    unreachable,
)

if TYPE_CHECKING:
    import httpx

PAGE = 1000
WAIT_EVERY = 1.0


def add_import_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "import",
        help="upload a folder of files, or the files a CSV lists, as a dataset's items",
        description=__doc__,
    )
    add_api_options(command)
    command.add_argument(
        "path",
        type=Path,
        help="a folder (its files, in subfolders too) or a CSV with the columns "
        "file (relative to the CSV), and optionally name and split",
    )
    command.add_argument("--dataset", required=True, help="the dataset's id")
    command.add_argument("--version", help="the version's id (default: the dataset's first)")
    command.add_argument("--split", help="put the items in this split (made if missing)")
    command.add_argument("--parallel", type=int, default=4, help="uploads at once (default 4)")
    command.add_argument(
        "--wait", action="store_true", help="then count the dataset's jobs until all are done"
    )


@dataclass(frozen=True)
class Entry:
    file: Path
    name: str
    split: str | None


@dataclass
class Report:
    counts: Counter[str] = field(default_factory=Counter)
    refused: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str, entry: Entry, reason: str = "") -> None:
        with self.lock:
            self.counts[outcome] += 1
            if reason:
                self.refused.append((entry.name, reason))


def run_import(args: argparse.Namespace) -> int:
    import httpx

    if not has_api_key(args, "itemflow import"):
        return 2
    try:
        entries = list_entries(args.path, args.split)
    except (OSError, ValueError) as error:
        print(f"itemflow import: {error}", file=sys.stderr)
        return 2
    try:
        with api_client(args) as client:
            importer = Importer(client, args.dataset, args.version)
            report = importer.upload_all(entries, max(1, args.parallel))
            print_report(report)
            if report.counts["stopped"]:
                return 130
            if args.wait:
                wait_for_jobs(client, args.dataset)
    except ImportStopped as error:
        print(f"itemflow import: {error}", file=sys.stderr)
        return 1
    except httpx.HTTPError as error:
        unreachable(args, "itemflow import", error)
        return 1
    return 1 if report.refused else 0


def list_entries(path: Path, split: str | None) -> list[Entry]:
    """The files to upload, each with its item's name and split."""
    if path.is_dir():
        files = sorted(found for found in path.rglob("*") if found.is_file())
        return [Entry(found, found.relative_to(path).as_posix(), split) for found in files]
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{path} is neither a folder nor a .csv file")
    with path.open(newline="", encoding="utf-8-sig") as table:
        rows = list(csv.DictReader(table))
    if rows and "file" not in rows[0]:
        raise ValueError(f"{path} has no column named file")
    return [
        Entry(
            path.parent / row["file"],
            (row.get("name") or "").strip() or row["file"],
            (row.get("split") or "").strip() or split,
        )
        for row in rows
        if (row.get("file") or "").strip()
    ]


class ImportStopped(Exception):
    """The dataset, version or key is not usable: nothing can be imported."""


def answered(answer: httpx.Response) -> Any:
    """The answer's JSON; an error answer stops the import with its reason."""
    if answer.is_error:
        raise ImportStopped(problem_line(answer))
    return answer.json()


class Importer:
    def __init__(self, client: httpx.Client, dataset_id: str, version_id: str | None) -> None:
        self.client = client
        if version_id is None:
            versions = answered(client.get(f"/datasets/{dataset_id}")).get("versions") or []
            if not versions:
                raise ImportStopped("the dataset has no version")
            version_id = versions[0]["id"]
        else:
            answered(client.get(f"/datasets/{dataset_id}/versions/{version_id}"))
        self.items_path = f"/datasets/{dataset_id}/versions/{version_id}/items"
        self.splits_path = f"/datasets/{dataset_id}/versions/{version_id}/splits"
        self.splits: dict[str, str] = {}
        self.split_lock = threading.Lock()
        self.by_name: dict[str, list[str]] = {}
        for item in self._all_items():
            self.by_name.setdefault(item["name"], []).append(item["id"])

    def _all_items(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        page = 0
        while True:
            rows = answered(
                self.client.get(self.items_path, params={"page_size": PAGE, "page_count": page})
            )
            found += rows
            if len(rows) < PAGE:
                return found
            page += 1

    def split_id(self, name: str) -> str:
        """The version's split of that name, made the first time it is asked for."""
        with self.split_lock:
            if not self.splits:
                rows = answered(self.client.get(self.splits_path))
                self.splits = {row["name"]: row["id"] for row in rows}
            if name not in self.splits:
                made = answered(self.client.post(self.splits_path, json={"name": name}))
                self.splits[name] = made["id"]
            return self.splits[name]

    def upload_all(self, entries: list[Entry], parallel: int) -> Report:
        from tqdm import tqdm

        report = Report()
        with (
            tqdm(total=len(entries), unit="file", desc="import") as bar,
            ThreadPoolExecutor(parallel) as pool,
        ):
            futures: list[Future[None]] = [
                pool.submit(self.upload_one, entry, report) for entry in entries
            ]
            try:
                for future in futures:
                    future.result()
                    bar.update()
                    bar.set_postfix(report.counts, refresh=False)
            except KeyboardInterrupt:
                # The uploads under way end; the rest wait for the next run.
                pool.shutdown(wait=True, cancel_futures=True)
                report.counts["stopped"] = sum(future.cancelled() for future in futures)
        return report

    def upload_one(self, entry: Entry, report: Report) -> None:
        try:
            content = entry.file.read_bytes()
        except OSError as error:
            report.add("refused", entry, f"cannot read it: {error.strerror or error}")
            return
        if not content:
            report.add("refused", entry, "the file is empty")
            return
        digest = hashlib.sha256(content).hexdigest()
        target = None
        for item_id in self.by_name.get(entry.name, []):
            held = self.client.head(
                f"{self.items_path}/{item_id}/download", headers={"If-None-Match": f'"{digest}"'}
            )
            if held.status_code == 304:
                report.add("already there", entry)
                return
            if held.status_code == 404 and target is None:
                target = item_id  # an item whose upload an earlier run did not finish
        made_in: str | None = None  # the split of an item this run made
        if target is None:
            body: dict[str, Any] = {"name": entry.name}
            if entry.split:
                made_in = self.split_id(entry.split)
                body["splits"] = [{"id": made_in}]
            made = self.client.post(self.items_path, json=body)
            if made.is_error:
                report.add("refused", entry, problem_line(made))
                return
            target = made.json()["id"]
        sent = self.client.post(
            f"{self.items_path}/{target}/upload", files={"file": (entry.file.name, content)}
        )
        if not sent.is_error:
            report.add("uploaded", entry)
            return
        reason = problem_line(sent)
        # No item without its file is left of a refused one, where the API
        # allows its removal (through a split); else the next run reuses it.
        if made_in is not None:
            self.client.delete(f"{self.splits_path}/{made_in}/items/{target}")
        else:
            reason += f" (its item {target} is left without a file)"
        report.add("refused", entry, reason)


def print_report(report: Report) -> None:
    counts = report.counts
    stopped = counts["stopped"]
    print(
        f"uploaded {counts['uploaded']}, already there {counts['already there']}, "
        f"refused {counts['refused']}"
        + (f", not yet done {stopped} (run it again to resume)" if stopped else "")
    )
    for name, reason in report.refused:
        print(f"refused: {name}: {reason}", file=sys.stderr)


def wait_for_jobs(client: httpx.Client, dataset_id: str) -> None:
    """Count the dataset's jobs by status until none is pending or running."""
    from tqdm import tqdm

    path = f"/datasets/{dataset_id}/post-processors/jobs/summary"
    with tqdm(unit="job", desc="jobs") as bar:
        while True:
            totals: Counter[str] = Counter()
            for row in answered(client.get(path))["post_processors"]:
                totals.update(row["counts"])
            bar.total = totals["total"]
            bar.n = totals["completed"] + totals["failed"]
            bar.set_postfix(
                pending=totals["pending"],
                processing=totals["processing"],
                completed=totals["completed"],
                failed=totals["failed"],
            )
            if totals["pending"] + totals["processing"] == 0:
                break
            time.sleep(WAIT_EVERY)
    print(f"jobs: completed {totals['completed']}, failed {totals['failed']}")

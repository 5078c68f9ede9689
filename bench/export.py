"""Export of a large version: the API process's memory and the time a
download takes, on PostgreSQL.

    .venv/bin/python bench/export.py [--items 100000] [--small 10000]

Fills two versions of text items (a label and a split each), one of
--small items and one of --items, starts `itemflow api`, and downloads
each version's zip in `csv` (one entry) and `folders` (an entry an item),
reading it as it comes and throwing it away, while sampling the server's
resident memory every 20 ms, each in an API process of its own. Memory is
flat when the large version's growth over the idle server is about the
small one's, not --items / --small times it. Beside each download, in the
same run, it pages
through the same version's items with the items list (1,000 a page): the
baseline, what a client that fetched the items itself would wait.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.engine import environment  # noqa: E402
from bench.upload_memory import rss_mib  # noqa: E402


def fill(database_url: str, dataset: dict[str, Any], version: dict[str, Any], count: int) -> None:
    """`count` text items in the version, each labelled `label` and in its
    first split."""
    ids = {"d": dataset["id"], "v": version["id"], "u": dataset["user_id"], "count": count}
    ids["s"] = version["splits"][0]["id"]
    engine = create_engine(database_url)
    with engine.begin() as connection:
        label = connection.execute(
            text(
                "INSERT INTO labels (id, version_id, user_id, name, description, color, index,"
                " shortcut, created_at, updated_at) VALUES (gen_random_uuid(), :v, :u, 'label',"
                " '', '', 0, '', now(), now()) RETURNING id"
            ),
            ids,
        ).scalar_one()
        connection.execute(
            text(
                "INSERT INTO dataset_items (id, version_id, dataset_id, user_id, name,"
                " description, text, extension, version, file_media_type, file_size,"
                " file_name, file_sha256, created_at, updated_at)"
                " SELECT gen_random_uuid(), :v, :d, :u, 'item ' || n, '',"
                " 'A sentence of some ordinary length for item ' || n || '.', '',"
                " 1, '', 0, '', '', now() + n * interval '1 microsecond', now()"
                " FROM generate_series(1, :count) AS n"
            ),
            ids,
        )
        connection.execute(
            text(
                "INSERT INTO item_splits (item_id, split_id)"
                " SELECT id, :s FROM dataset_items WHERE version_id = :v"
            ),
            ids,
        )
        connection.execute(
            text(
                "INSERT INTO annotations (id, version_id, item_id, label_id, coordinates,"
                " user_id, created_at, updated_at)"
                " SELECT gen_random_uuid(), :v, id, :l, '', :u, now(), now()"
                " FROM dataset_items WHERE version_id = :v"
            ),
            {**ids, "l": label},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
    engine.dispose()


class Sampler:
    """The process's peak RSS while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0

    def __enter__(self) -> Sampler:
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.02)


def export(client: httpx.Client, path: str, fmt: str, out: Path) -> tuple[float, int]:
    started = time.monotonic()
    size = 0
    with client.stream("GET", path + "/download", params={"format": fmt}) as answer:
        answer.raise_for_status()
        with out.open("wb") as file:
            for chunk in answer.iter_bytes():
                size += len(chunk)
                file.write(chunk)
    return time.monotonic() - started, size


def page_through(client: httpx.Client, path: str) -> float:
    started = time.monotonic()
    page = 0
    while client.get(path + "/items", params={"page_size": 1000, "page_count": page}).json():
        page += 1
    return time.monotonic() - started


@contextlib.contextmanager
def api_server(env: dict[str, str], key: str) -> Iterator[tuple[httpx.Client, int]]:
    """A fresh `itemflow api`, warmed by one request: each measurement has
    a process of its own, with nothing left by the one before."""
    api = subprocess.Popen([sys.executable, "-m", "shared.cli", "api"], env=env, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{env['API_PORT']}"
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                httpx.get(base + "/healthz")
                break
            time.sleep(0.1)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base + "/api/v1", headers=headers, timeout=600) as client:
            client.get("/datasets").raise_for_status()
            yield client, api.pid
    finally:
        api.terminate()
        api.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    args = parser.parse_args()
    with environment("services") as env:
        key = subprocess.run(
            [sys.executable, "-m", "shared.cli", "users", "create", "exporter"],
            env=env, cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        paths = {}
        with api_server(env, key) as (client, _):
            for count in (args.small, args.items):
                body = {"name": f"{count}", "content_type": "text", "default_splits": True}
                dataset = client.post("/datasets", json=body).json()
                version = dataset["versions"][0]
                fill(env["DATABASE_URL"], dataset, version, count)
                paths[count] = f"/datasets/{dataset['id']}/versions/{version['id']}"
        out = Path(env["VAR_DIR"]) / "export.zip"
        print(f"items: {args.small:,} and {args.items:,} (text, a label and a split each)")
        for fmt in ("csv", "folders"):
            growth = {}
            for count, path in paths.items():
                with api_server(env, key) as (client, pid):
                    idle = rss_mib(pid)
                    with Sampler(pid) as sampler:
                        seconds, size = export(client, path, fmt, out)
                with api_server(env, key) as (client, pid):
                    baseline = page_through(client, path)
                entries = len(zipfile.ZipFile(out).namelist())
                growth[count] = sampler.peak - idle
                print(
                    f"{fmt:8} {count:>7,} items: {seconds:6.1f} s, {size / 2**20:5.1f} MiB zip, "
                    f"{entries:>7,} entries; API RSS {idle:.0f} MiB idle, peak "
                    f"{sampler.peak:.0f} (+{growth[count]:.1f}); items list paged through "
                    f"{baseline:.1f} s (export / list {seconds / baseline:.2f})"
                )
            print(
                f"{fmt:8} memory growth at {args.items:,} items {growth[args.items]:.1f} MiB, "
                f"at {args.small:,} {growth[args.small]:.1f} MiB"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The items list with job counts on a version of many items: its time per
page and its database queries per page, on PostgreSQL.

    .venv/bin/python bench/items_list.py [--items 100000] [--pages 50]

Fills a database of its own (one version of --items items, each with one
completed job), then asks the API (in this process, through Starlette's
test client: no network between) for pages of 100 near the start and deep
in the list, and prints p50 / p99 and the queries each page ran; then
times what any implementation must ask PostgreSQL for a page, alone: the
exact count of the version's items and a deep page's ids at its offset.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.engine import environment  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument(
        "--explain", action="store_true", help="print the plan of each query of a deep page"
    )
    args = parser.parse_args()
    with environment("services") as env:
        # The key checked once, not again every few seconds: the queries
        # counted are the list's own.
        os.environ.update(env, API_KEY_CACHE_SECONDS="3600")
        key = subprocess.run(
            [sys.executable, "-m", "shared.cli", "users", "create", "lister"],
            env=env, cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        measure(key, env["DATABASE_URL"], args)
    return 0


def fill(database_url: str, dataset: dict[str, Any], post_processor_id: str, count: int) -> None:
    """`count` items in the dataset's version, a completed job each."""
    ids = {
        "d": dataset["id"],
        "v": dataset["versions"][0]["id"],
        "u": dataset["user_id"],
        "p": post_processor_id,
        "count": count,
    }
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO dataset_items (id, version_id, dataset_id, user_id, name,"
                " description, text, extension, version, file_media_type, file_size,"
                " file_name, file_sha256, created_at, updated_at)"
                " SELECT gen_random_uuid(), :v, :d, :u, 'item ' || n, '', 'some text', 'txt',"
                " 1, '', 0, '', '', now() + n * interval '1 microsecond', now()"
                " FROM generate_series(1, :count) AS n"
            ),
            ids,
        )
        connection.execute(
            text(
                "INSERT INTO post_processor_jobs (id, post_processor_id, dataset_item_id,"
                " dataset_id, user_id, status, attempts, max_attempts, created_at, updated_at)"
                " SELECT gen_random_uuid(), :p, id, :d, :u, 'completed', 1, 3, now(), now()"
                " FROM dataset_items WHERE version_id = :v"
            ),
            ids,
        )
    with engine.connect() as connection:
        # As autovacuum leaves a table after a bulk insert (its insert
        # threshold): the visibility map set, so that counts and offsets
        # are read from the index alone.
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    engine.dispose()


def measure(key: str, database_url: str, args: argparse.Namespace) -> None:
    from starlette.testclient import TestClient

    from api.app import create_app
    from shared.db import get_engine

    with TestClient(create_app()) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        dataset = client.post("/api/v1/datasets", json={"name": "big"}).json()
        post_processor = client.post(
            f"/api/v1/datasets/{dataset['id']}/post-processors",
            json={"name": "n", "model_type": "ner"},
        ).json()
        fill(database_url, dataset, post_processor["id"], args.items)
        path = f"/api/v1/datasets/{dataset['id']}/versions/{dataset['versions'][0]['id']}/items"
        queries: list[tuple[str, Any]] = []
        event.listen(get_engine(), "before_cursor_execute", lambda *a: queries.append((a[2], a[3])))
        client.get(path, params={"page_size": 100})  # connections made, key known
        for where, index in (("first pages", 0), ("deep pages", args.items // 100 - 10)):
            times, counts = [], []
            for page in range(args.pages):
                queries.clear()
                started = time.perf_counter()
                answer = client.get(
                    path, params={"page_size": 100, "page_count": index + page % 10}
                )
                times.append(time.perf_counter() - started)
                counts.append(len(queries))
                assert answer.status_code == 200 and len(answer.json()) == 100, answer.text
            p50 = statistics.median(times) * 1000
            p99 = statistics.quantiles(times, n=100, method="inclusive")[98] * 1000
            print(
                f"{args.items:,} items, {where}: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                f"{max(counts)} queries a page"
            )
        floor(database_url, dataset["versions"][0]["id"], args)
        if args.explain:
            explain(database_url, queries)


def floor(database_url: str, version_id: str, args: argparse.Namespace) -> None:
    """What any page costs PostgreSQL however it is asked for: the exact
    count for the X-Total-Count header, and a deep page's 100 ids at its
    offset, each timed alone from this process (the same index, no ORM)."""
    engine = create_engine(database_url)
    statements = {
        "the count": "SELECT count(*) FROM dataset_items WHERE version_id = :v",
        "a deep page's ids": (
            "SELECT id FROM dataset_items WHERE version_id = :v"
            " ORDER BY created_at, id LIMIT 100 OFFSET :offset"
        ),
    }
    parameters = {"v": version_id, "offset": (args.items // 100 - 10) * 100}
    with engine.connect() as connection:
        for name, statement in statements.items():
            times = []
            for _ in range(args.pages):
                started = time.perf_counter()
                connection.execute(text(statement), parameters).all()
                times.append(time.perf_counter() - started)
            print(f"PostgreSQL alone, {name}: p50 {statistics.median(times) * 1000:.1f} ms")
    engine.dispose()


def explain(database_url: str, queries: list[tuple[str, Any]]) -> None:
    """EXPLAIN ANALYZE each query of the last page, with its parameters."""
    engine = create_engine(database_url)
    with engine.connect() as connection:
        cursor = connection.connection.cursor()
        for statement, parameters in queries:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            print("\n" + statement.splitlines()[0][:120])
            print("\n".join("  " + row[0] for row in cursor.fetchall()))
    engine.dispose()


if __name__ == "__main__":
    sys.exit(main())

"""A database that answers but holds a request (a row another session
keeps locked): the API answers 503 within its lock timeout and goes on
serving other requests meanwhile."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from sqlalchemy import create_engine, text

from shared.settings import get_settings
from tests.builders import item_path, make_dataset, make_item, ok, problem
from tests.conftest import BACKEND

pytestmark = pytest.mark.skipif(
    BACKEND != "services",
    reason="row locks and lock timeouts are PostgreSQL's (SQLite locks the whole "
    "file, and waits its busy_timeout)",
)


def test_an_update_of_a_locked_item_answers_503_within_the_lock_timeout(client):
    dataset = make_dataset(client)
    item = make_item(client, dataset)
    lock_timeout = get_settings().api_lock_timeout_seconds
    forgotten = create_engine(get_settings().effective_database_url)
    answers: dict[str, httpx.Response] = {}
    try:
        with forgotten.connect() as session:
            # A session that took the item's row and went away to think.
            session.execute(
                text("SELECT 1 FROM dataset_items WHERE id = :id FOR UPDATE"), {"id": item["id"]}
            )
            started = time.monotonic()
            update = threading.Thread(
                target=lambda: answers.setdefault(
                    "update", client.put(item_path(dataset, item), json={"name": "renamed"})
                )
            )
            update.start()
            time.sleep(0.5)
            # Meanwhile the API serves everything else, at once.
            assert update.is_alive()
            served = time.monotonic()
            ok(client.get(f"/datasets/{dataset['id']}"))
            assert time.monotonic() - served < 1.0
            update.join(timeout=lock_timeout + 10)
            waited = time.monotonic() - started
            session.rollback()
    finally:
        forgotten.dispose()

    body = problem(answers["update"], 503)
    assert answers["update"].headers["retry-after"] == "5"
    assert "did not answer in time" in body["detail"]
    assert lock_timeout <= waited < lock_timeout + 3
    # The lock gone, the same update goes through, and nothing was half done.
    assert ok(client.get(item_path(dataset, item)))["name"] == item["name"]
    assert ok(client.put(item_path(dataset, item), json={"name": "renamed"}))["name"] == "renamed"

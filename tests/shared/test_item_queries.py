"""The items list costs two queries, for 2 items as for 40."""

from __future__ import annotations

import uuid

from sqlalchemy import event

from shared.db import get_engine, session_scope
from shared.services import items
from shared.services.scope import Page
from tests.shared.factories import add_item, add_job, new_version


def make_version_with_items(count: int) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    with session_scope() as session:
        version, post_processor = new_version(session, model_type="ocr", model_id="")
        for _ in range(count):
            item = add_item(session, version)
            for status in ("completed", "failed", "failed"):
                add_job(session, item, post_processor.id, status=status)
        return version.user_id, version.dataset_id, version.id


def list_with_counts(user_id, dataset_id, version_id):
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(get_engine(), "before_cursor_execute", count)
    try:
        with session_scope() as session:
            rows, total = items.list_items(session, user_id, dataset_id, version_id, Page())
            listed = [(row.splits, row.annotations, counts) for row, counts in rows]
            assert total == len(rows)
    finally:
        event.remove(get_engine(), "before_cursor_execute", count)
    return listed, [s for s in statements if s.lstrip().upper().startswith("SELECT")]


def test_the_items_list_makes_no_query_per_item():
    few, few_queries = list_with_counts(*make_version_with_items(2))
    many, many_queries = list_with_counts(*make_version_with_items(40))

    assert len(few) == 2 and len(many) == 40
    assert all((c.completed, c.failed, c.total) == (1, 2, 3) for _s, _a, c in many)
    # The page with its splits, job counts and total; its annotations.
    assert len(many_queries) == len(few_queries) == 2, many_queries

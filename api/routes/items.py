"""Dataset items, with their job counts."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.routing import Route

from api.http import Context, Listing, Query, endpoint, if_match, public, row_endpoint
from api.routes.datasets import VERSION
from shared.models import DatasetItem, JobStatus
from shared.schemas import ItemCreate, ItemPublic, ItemUpdate, ItemWithJobStatus, JobCounts
from shared.services import items


def with_job_status(item: DatasetItem, counts: JobCounts) -> dict[str, Any]:
    return public(ItemPublic, item, job_status=counts.model_dump())


SPLIT_ID = Query("split_id", uuid.UUID)
JOB_STATUS = Query("job_status", JobStatus)


@endpoint(ItemWithJobStatus, query=(SPLIT_ID, JOB_STATUS))
def list_items(c: Context) -> Listing:
    rows, total = items.list_items(c.session, c.user_id, **c.ids, page=c.page, **c.query)
    return Listing([with_job_status(item, counts) for item, counts in rows], total)


create_item = row_endpoint(ItemPublic, items.create_item, body=ItemCreate, status=201)


@endpoint(ItemWithJobStatus)
def get_item(c: Context) -> dict[str, Any]:
    item = items.load_item(c.session, c.user_id, **c.ids)
    return with_job_status(item, items.job_counts(c.session, item.id))


@endpoint(ItemPublic, body=ItemUpdate, if_match=True, errors=(412,))
def update_item(c: Context) -> dict[str, Any]:
    item = items.update_item(
        c.session, c.user_id, **c.ids, body=c.body, if_match=if_match(c.request)
    )
    return public(ItemPublic, item)


delete_item = row_endpoint(ItemPublic, items.delete_item)


ITEM = VERSION + "/items/{item_id:uuid}"

routes = [
    Route(VERSION + "/items", list_items, methods=["GET"]),
    Route(VERSION + "/items", create_item, methods=["POST"]),
    Route(ITEM, get_item, methods=["GET"]),
    Route(ITEM, update_item, methods=["PUT"]),
    Route(
        VERSION + "/splits/{split_id:uuid}/items/{item_id:uuid}", delete_item, methods=["DELETE"]
    ),
]

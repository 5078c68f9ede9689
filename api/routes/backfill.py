"""Run a post-processor over a dataset's items already there."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Literal

from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.http import Declaration, authenticate, declare, json_response, path_ids, read_body
from api.routes.datasets import DATASET
from shared.schemas import RequestBody
from shared.services import backfill


class RunRequest(RequestBody):
    version_id: uuid.UUID | None = None
    split_id: uuid.UUID | None = None
    items: Literal["all", "without_completed"] = "all"
    # Look at this many items and answer where to go on (`next`): the CLI
    # shows its progress by them. Not given: every item, in one request.
    limit: int | None = Field(default=None, ge=1, le=100_000)
    after: str = ""


class RunDone(BaseModel):
    created: int
    skipped: int
    next: str
    remaining: int


@declare(Declaration(answer=RunDone, body=RunRequest, body_optional=True))
async def run_post_processor(request: Request) -> Response:
    """Jobs of this post-processor for the items the filter picks, made and
    sent in batches; an item with one pending or running is skipped."""
    user_id = await authenticate(request)
    body = await read_body(request, RunRequest, optional=True)
    ids = path_ids(request)
    chosen = backfill.Filter(version_id=body.version_id, split_id=body.split_id, items=body.items)
    done = await run_in_threadpool(
        backfill.run,
        user_id,
        ids["dataset_id"],
        ids["post_processor_id"],
        chosen,
        limit=body.limit,
        after=body.after,
    )
    return json_response(asdict(done))


routes = [
    Route(
        DATASET + "/post-processors/{post_processor_id:uuid}/run",
        run_post_processor,
        methods=["POST"],
    )
]

"""Post-processors of a dataset, and the jobs they run."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

from starlette.routing import Route

from api.http import Context, Listing, Query, endpoint, public, row_endpoint
from api.routes.datasets import DATASET
from api.routes.items import ITEM
from shared.models import JobStatus, PostProcessor, PostProcessorJob, as_dict
from shared.schemas import (
    JobPublic,
    JobRetry,
    JobsRetried,
    JobsRetry,
    JobSummary,
    JobWithDetails,
    PostProcessorCreate,
    PostProcessorPublic,
    PostProcessorUpdate,
    PostProcessorWithDetails,
)
from shared.services import job_bulk, job_lists, jobs, postprocessors


def with_details(row: PostProcessor, details: postprocessors.ModelDetails) -> dict[str, Any]:
    return public(PostProcessorWithDetails, {**as_dict(row), **asdict(details)})


def job_with_details(row: tuple[PostProcessorJob, str, str]) -> dict[str, Any]:
    job, post_processor_name, item_name = row
    return public(JobPublic, job, post_processor_name=post_processor_name, item_name=item_name)


@endpoint(PostProcessorWithDetails, many=True)
def list_post_processors(c: Context) -> list[dict[str, Any]]:
    rows = postprocessors.list_post_processors(c.session, c.user_id, **c.ids)
    return [
        with_details(row, details)
        for row, details in zip(rows, postprocessors.model_details(c.session, rows), strict=True)
    ]


create_post_processor = row_endpoint(
    PostProcessorPublic, postprocessors.create_post_processor, body=PostProcessorCreate, status=201
)


@endpoint(PostProcessorWithDetails)
def get_post_processor(c: Context) -> dict[str, Any]:
    row = postprocessors.get_post_processor(c.session, c.user_id, **c.ids)
    [details] = postprocessors.model_details(c.session, [row])
    return with_details(row, details)


update_post_processor = row_endpoint(
    PostProcessorPublic, postprocessors.update_post_processor, body=PostProcessorUpdate
)
delete_post_processor = row_endpoint(PostProcessorPublic, postprocessors.delete_post_processor)


STATUS = Query("status", JobStatus)
POST_PROCESSOR_ID = Query("post_processor_id", uuid.UUID)
ITEM_ID = Query("item_id", uuid.UUID)


@endpoint(JobWithDetails, query=(STATUS, POST_PROCESSOR_ID, ITEM_ID))
def list_dataset_jobs(c: Context) -> Listing:
    rows, total = job_lists.list_dataset_jobs(c.session, c.user_id, **c.ids, page=c.page, **c.query)
    return Listing([job_with_details(row) for row in rows], total)


@endpoint(JobWithDetails, many=True)
def list_item_jobs(c: Context) -> list[dict[str, Any]]:
    rows = job_lists.list_item_jobs(c.session, c.user_id, **c.ids)
    return [job_with_details(row) for row in rows]


@endpoint(JobPublic, body=JobRetry, optional_body=True, errors=(409,))
def retry_job(c: Context) -> dict[str, Any]:
    job = jobs.retry_job(c.session, c.user_id, **c.ids, max_attempts=c.body.max_attempts)
    return public(JobPublic, job)


@endpoint(JobsRetried, body=JobsRetry)
def retry_jobs(c: Context) -> dict[str, Any]:
    """Retry the dataset's failed jobs that the filter picks; those without an
    attempt left (under `max_attempts`, when given) are skipped."""
    chosen = job_bulk.RetryFilter(**c.body.model_dump(exclude={"status"}))
    return asdict(job_bulk.retry_failed(c.session, c.user_id, **c.ids, chosen=chosen))


@endpoint(JobSummary)
def job_summary(c: Context) -> dict[str, Any]:
    """The dataset's jobs by status for each post-processor, and the most
    common errors of its failed ones."""
    return JobSummary.model_validate(
        job_bulk.summary(c.session, c.user_id, **c.ids), from_attributes=True
    ).model_dump(mode="json")


POST_PROCESSORS = DATASET + "/post-processors"
ONE = POST_PROCESSORS + "/{post_processor_id:uuid}"

routes = [
    Route(POST_PROCESSORS, list_post_processors, methods=["GET"]),
    Route(POST_PROCESSORS, create_post_processor, methods=["POST"]),
    # Before the {post_processor_id} routes, though "jobs" is no UUID anyway.
    Route(POST_PROCESSORS + "/jobs", list_dataset_jobs, methods=["GET"]),
    Route(POST_PROCESSORS + "/jobs/retry", retry_jobs, methods=["POST"]),
    Route(POST_PROCESSORS + "/jobs/summary", job_summary, methods=["GET"]),
    Route(ONE, get_post_processor, methods=["GET"]),
    Route(ONE, update_post_processor, methods=["PUT"]),
    Route(ONE, delete_post_processor, methods=["DELETE"]),
    Route(ITEM + "/jobs", list_item_jobs, methods=["GET"]),
    Route(ITEM + "/jobs/{job_id:uuid}/retry", retry_job, methods=["POST"]),
]

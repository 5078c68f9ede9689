"""Post-processors of a dataset, and the jobs they run."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.routing import Route

from api.http import Context, Listing, choice_param, endpoint, public, uuid_param
from api.routes.datasets import DATASET
from api.routes.items import ITEM
from shared.models import JobStatus, OnnxModel, PostProcessor, PostProcessorJob, as_dict
from shared.postprocessors.base import PostProcessorModel
from shared.postprocessors.registry import get_registry
from shared.schemas import (
    JobPublic,
    JobRetry,
    PostProcessorCreate,
    PostProcessorPublic,
    PostProcessorUpdate,
    PostProcessorWithDetails,
)
from shared.services import job_lists, jobs, postprocessors


def with_details(session: Session, rows: list[PostProcessor]) -> list[dict[str, Any]]:
    """Post-processors with the name and kind of the model serving each."""
    registry = get_registry()
    classes = {row.id: registry.model_class(row.model_type, row.model_id) for row in rows}
    # A model an operator registered is a row, not a class: the names of
    # those asked for come in one query, not one per post-processor.
    wanted = {row.model_id for row in rows if classes[row.id] is None and row.model_id}
    registered = (
        set(
            session.execute(
                select(OnnxModel.name, OnnxModel.kind).where(OnnxModel.name.in_(wanted))
            )
        )
        if wanted
        else set()
    )
    return [_details(row, classes[row.id], registered) for row in rows]


def _details(
    row: PostProcessor, model: type[PostProcessorModel] | None, registered: set[Any]
) -> dict[str, Any]:
    if row.external_provider:
        details = {
            "model_name": row.external_model,
            "model_kind": "external",
            "is_external": True,
            "provider_name": row.external_provider,
        }
    elif model is not None:
        details = {
            "model_name": model.name,
            "model_kind": model.kind,
            "is_external": False,
            "provider_name": "",
        }
    else:
        onnx = (row.model_id, row.model_type) in registered
        details = {
            "model_name": row.model_id if onnx else "",
            "model_kind": "onnx" if onnx else "missing",
            "is_external": False,
            "provider_name": "",
        }
    details["config_error"] = postprocessors.provider_problems(row)
    return public(PostProcessorWithDetails, {**as_dict(row), **details})


def job_with_details(row: tuple[PostProcessorJob, str, str]) -> dict[str, Any]:
    job, post_processor_name, item_name = row
    return public(JobPublic, job, post_processor_name=post_processor_name, item_name=item_name)


@endpoint()
def list_post_processors(c: Context) -> list[dict[str, Any]]:
    rows = postprocessors.list_post_processors(c.session, c.user_id, c.id("dataset_id"))
    return with_details(c.session, rows)


@endpoint(PostProcessorCreate, status=201)
def create_post_processor(c: Context) -> dict[str, Any]:
    row = postprocessors.create_post_processor(c.session, c.user_id, c.id("dataset_id"), c.body)
    return public(PostProcessorPublic, row)


@endpoint()
def get_post_processor(c: Context) -> dict[str, Any]:
    row = postprocessors.get_post_processor(
        c.session, c.user_id, c.id("dataset_id"), c.id("post_processor_id")
    )
    [details] = with_details(c.session, [row])
    return details


@endpoint(PostProcessorUpdate)
def update_post_processor(c: Context) -> dict[str, Any]:
    row = postprocessors.update_post_processor(
        c.session, c.user_id, c.id("dataset_id"), c.id("post_processor_id"), c.body
    )
    return public(PostProcessorPublic, row)


@endpoint()
def delete_post_processor(c: Context) -> dict[str, Any]:
    row = postprocessors.delete_post_processor(
        c.session, c.user_id, c.id("dataset_id"), c.id("post_processor_id")
    )
    return public(PostProcessorPublic, row)


@endpoint()
def list_dataset_jobs(c: Context) -> Listing:
    rows, total = job_lists.list_dataset_jobs(
        c.session,
        c.user_id,
        c.id("dataset_id"),
        c.page,
        status=choice_param(c.request, "status", JobStatus),
        post_processor_id=uuid_param(c.request, "post_processor_id"),
        item_id=uuid_param(c.request, "item_id"),
    )
    return Listing([job_with_details(row) for row in rows], total)


@endpoint()
def list_item_jobs(c: Context) -> list[dict[str, Any]]:
    rows = job_lists.list_item_jobs(
        c.session, c.user_id, c.id("dataset_id"), c.id("version_id"), c.id("item_id")
    )
    return [job_with_details(row) for row in rows]


@endpoint(JobRetry, optional_body=True)
def retry_job(c: Context) -> dict[str, Any]:
    job = jobs.retry_job(
        c.session,
        c.user_id,
        c.id("dataset_id"),
        c.id("version_id"),
        c.id("item_id"),
        c.id("job_id"),
        c.body.max_attempts,
    )
    return public(JobPublic, job)


POST_PROCESSORS = DATASET + "/post-processors"
ONE = POST_PROCESSORS + "/{post_processor_id:uuid}"

routes = [
    Route(POST_PROCESSORS, list_post_processors, methods=["GET"]),
    Route(POST_PROCESSORS, create_post_processor, methods=["POST"]),
    # Before the {post_processor_id} routes, though "jobs" is no UUID anyway.
    Route(POST_PROCESSORS + "/jobs", list_dataset_jobs, methods=["GET"]),
    Route(ONE, get_post_processor, methods=["GET"]),
    Route(ONE, update_post_processor, methods=["PUT"]),
    Route(ONE, delete_post_processor, methods=["DELETE"]),
    Route(ITEM + "/jobs", list_item_jobs, methods=["GET"]),
    Route(ITEM + "/jobs/{job_id:uuid}/retry", retry_job, methods=["POST"]),
]

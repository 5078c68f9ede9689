"""The splits, labels and annotations of a dataset version."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.routing import Route

from api.http import Context, Listing, endpoint, public, public_list
from api.routes.datasets import VERSION
from shared.models import DatasetSplit, Label
from shared.schemas import (
    AnnotationCreate,
    AnnotationPublic,
    AnnotationUpdate,
    LabelCreate,
    LabelPublic,
    LabelUpdate,
    SplitCreate,
    SplitPublic,
    SplitUpdate,
)
from shared.services import annotations as annotation_service
from shared.services import datasets

Child = TypeVar("Child", DatasetSplit, Label)


def child_routes(
    path: str,
    model: type[Child],
    schema: type[BaseModel],
    create_body: type[BaseModel],
    update_body: type[BaseModel],
) -> list[Route]:
    """The five routes of a version's splits or labels, which differ only in
    their model and schemas."""

    def version(c: Context) -> tuple[uuid.UUID, uuid.UUID]:
        return c.id("dataset_id"), c.id("version_id")

    @endpoint(schema)
    def list_rows(c: Context) -> Listing:
        rows, total = datasets.list_children(c.session, model, c.user_id, *version(c), c.page)
        return Listing(public_list(schema, rows), total)

    @endpoint(schema, body=create_body, status=201)
    def create_row(c: Context) -> dict[str, Any]:
        row = datasets.create_child(c.session, model, c.user_id, *version(c), c.body)
        return public(schema, row)

    @endpoint(schema)
    def get_row(c: Context) -> dict[str, Any]:
        row_id = c.id("row_id")
        row = datasets.get_version_child(c.session, model, c.user_id, *version(c), row_id)
        return public(schema, row)

    @endpoint(schema, body=update_body)
    def update_row(c: Context) -> dict[str, Any]:
        row_id = c.id("row_id")
        row = datasets.update_child(c.session, model, c.user_id, *version(c), row_id, c.body)
        return public(schema, row)

    @endpoint(schema)
    def delete_row(c: Context) -> dict[str, Any]:
        row_id = c.id("row_id")
        row = datasets.delete_child(c.session, model, c.user_id, *version(c), row_id)
        return public(schema, row)

    one = path + "/{row_id:uuid}"
    return [
        Route(path, list_rows, methods=["GET"]),
        Route(path, create_row, methods=["POST"]),
        Route(one, get_row, methods=["GET"]),
        Route(one, update_row, methods=["PUT"]),
        Route(one, delete_row, methods=["DELETE"]),
    ]


@endpoint(AnnotationPublic, body=AnnotationCreate, status=201)
def create_annotation(c: Context) -> dict[str, Any]:
    annotation = annotation_service.create_annotation(
        c.session, c.user_id, c.id("dataset_id"), c.id("version_id"), c.body
    )
    return public(AnnotationPublic, annotation)


@endpoint(AnnotationPublic, body=AnnotationUpdate)
def update_annotation(c: Context) -> dict[str, Any]:
    annotation = annotation_service.update_annotation(
        c.session, c.user_id, c.id("dataset_id"), c.id("version_id"), c.id("annotation_id"), c.body
    )
    return public(AnnotationPublic, annotation)


@endpoint(AnnotationPublic)
def delete_annotation(c: Context) -> dict[str, Any]:
    annotation = annotation_service.delete_annotation(
        c.session, c.user_id, c.id("dataset_id"), c.id("version_id"), c.id("annotation_id")
    )
    return public(AnnotationPublic, annotation)


ANNOTATION = VERSION + "/annotations/{annotation_id:uuid}"

routes = [
    *child_routes(VERSION + "/splits", DatasetSplit, SplitPublic, SplitCreate, SplitUpdate),
    *child_routes(VERSION + "/labels", Label, LabelPublic, LabelCreate, LabelUpdate),
    Route(VERSION + "/annotations", create_annotation, methods=["POST"]),
    Route(ANNOTATION, update_annotation, methods=["PUT"]),
    Route(ANNOTATION, delete_annotation, methods=["DELETE"]),
]

"""The splits, labels and annotations of a dataset version."""

from __future__ import annotations

from functools import partial
from typing import TypeVar

from pydantic import BaseModel
from starlette.routing import Route

from api.http import Crud, row_endpoint
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
    answer: type[BaseModel],
    create_body: type[BaseModel],
    update_body: type[BaseModel],
) -> list[Route]:
    """The five routes of a version's splits or labels, which differ only in
    their model and schemas."""
    children = Crud(
        answer,
        create_body,
        update_body,
        *(
            partial(service, model=model)
            for service in (
                datasets.list_children,
                datasets.create_child,
                datasets.get_version_child,
                datasets.update_child,
                datasets.delete_child,
            )
        ),
    )
    return children.routes(path, path + "/{row_id:uuid}")


ANNOTATION = VERSION + "/annotations/{annotation_id:uuid}"

routes = [
    *child_routes(VERSION + "/splits", DatasetSplit, SplitPublic, SplitCreate, SplitUpdate),
    *child_routes(VERSION + "/labels", Label, LabelPublic, LabelCreate, LabelUpdate),
    Route(
        VERSION + "/annotations",
        row_endpoint(
            AnnotationPublic,
            annotation_service.create_annotation,
            body=AnnotationCreate,
            status=201,
        ),
        methods=["POST"],
    ),
    Route(
        ANNOTATION,
        row_endpoint(AnnotationPublic, annotation_service.update_annotation, body=AnnotationUpdate),
        methods=["PUT"],
    ),
    Route(
        ANNOTATION,
        row_endpoint(AnnotationPublic, annotation_service.delete_annotation),
        methods=["DELETE"],
    ),
]

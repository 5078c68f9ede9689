"""Datasets and their versions."""

from __future__ import annotations

from starlette.routing import Route

from api.http import Crud, row_endpoint
from shared.schemas import (
    DatasetCreate,
    DatasetPublic,
    DatasetUpdate,
    VersionCreate,
    VersionPublic,
    VersionUpdate,
)
from shared.services import datasets, version_copy

DATASET = "/datasets/{dataset_id:uuid}"
VERSION = DATASET + "/versions/{version_id:uuid}"

DATASETS = Crud(
    DatasetPublic,
    DatasetCreate,
    DatasetUpdate,
    datasets.list_datasets,
    datasets.create_dataset,
    datasets.load_dataset,
    datasets.update_dataset,
    datasets.delete_dataset,
)
VERSIONS = Crud(
    VersionPublic,
    VersionCreate,
    VersionUpdate,
    datasets.list_versions,
    datasets.create_version,
    datasets.load_version,
    datasets.update_version,
    datasets.delete_version,
)

routes = [
    *DATASETS.routes("/datasets", DATASET),
    *VERSIONS.routes(DATASET + "/versions", VERSION),
    # The body the client sends (a DatasetVersion naming the dataset) says
    # nothing the path does not: it is not read.
    Route(
        VERSION + "/new",
        row_endpoint(VersionPublic, version_copy.duplicate_version, status=201),
        methods=["POST"],
    ),
]

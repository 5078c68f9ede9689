"""Datasets and their versions."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from api.http import Context, Listing, endpoint, public, public_list
from shared.schemas import (
    DatasetCreate,
    DatasetPublic,
    DatasetUpdate,
    VersionCreate,
    VersionPublic,
    VersionUpdate,
)
from shared.services import datasets


@endpoint(DatasetPublic)
def list_datasets(c: Context) -> Listing:
    rows, total = datasets.list_datasets(c.session, c.user_id, c.page)
    return Listing(public_list(DatasetPublic, rows), total)


@endpoint(DatasetPublic, body=DatasetCreate, status=201)
def create_dataset(c: Context) -> dict[str, Any]:
    return public(DatasetPublic, datasets.create_dataset(c.session, c.user_id, c.body))


@endpoint(DatasetPublic)
def get_dataset(c: Context) -> dict[str, Any]:
    return public(DatasetPublic, datasets.load_dataset(c.session, c.user_id, c.id("dataset_id")))


@endpoint(DatasetPublic, body=DatasetUpdate)
def update_dataset(c: Context) -> dict[str, Any]:
    dataset = datasets.update_dataset(c.session, c.user_id, c.id("dataset_id"), c.body)
    return public(DatasetPublic, dataset)


@endpoint(DatasetPublic)
def delete_dataset(c: Context) -> dict[str, Any]:
    dataset = datasets.delete_dataset(c.session, c.user_id, c.id("dataset_id"))
    return public(DatasetPublic, dataset)


@endpoint(VersionPublic)
def list_versions(c: Context) -> Listing:
    rows, total = datasets.list_versions(c.session, c.user_id, c.id("dataset_id"), c.page)
    return Listing(public_list(VersionPublic, rows), total)


@endpoint(VersionPublic, body=VersionCreate, status=201)
def create_version(c: Context) -> dict[str, Any]:
    version = datasets.create_version(c.session, c.user_id, c.id("dataset_id"), c.body)
    return public(VersionPublic, version)


@endpoint(VersionPublic)
def get_version(c: Context) -> dict[str, Any]:
    version = datasets.load_version(c.session, c.user_id, c.id("dataset_id"), c.id("version_id"))
    return public(VersionPublic, version)


@endpoint(VersionPublic, body=VersionUpdate)
def update_version(c: Context) -> dict[str, Any]:
    version = datasets.update_version(
        c.session, c.user_id, c.id("dataset_id"), c.id("version_id"), c.body
    )
    return public(VersionPublic, version)


@endpoint(VersionPublic)
def delete_version(c: Context) -> dict[str, Any]:
    version = datasets.delete_version(c.session, c.user_id, c.id("dataset_id"), c.id("version_id"))
    return public(VersionPublic, version)


DATASET = "/datasets/{dataset_id:uuid}"
VERSION = DATASET + "/versions/{version_id:uuid}"

routes = [
    Route("/datasets", list_datasets, methods=["GET"]),
    Route("/datasets", create_dataset, methods=["POST"]),
    Route(DATASET, get_dataset, methods=["GET"]),
    Route(DATASET, update_dataset, methods=["PUT"]),
    Route(DATASET, delete_dataset, methods=["DELETE"]),
    Route(DATASET + "/versions", list_versions, methods=["GET"]),
    Route(DATASET + "/versions", create_version, methods=["POST"]),
    Route(VERSION, get_version, methods=["GET"]),
    Route(VERSION, update_version, methods=["PUT"]),
    Route(VERSION, delete_version, methods=["DELETE"]),
]

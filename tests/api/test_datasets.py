"""Datasets: /datasets. Their versions are in test_dataset_versions.py."""

import re
import uuid

import pytest

from tests.builders import (
    error_locs,
    find_nulls,
    first_version,
    item_path,
    make_annotation,
    make_dataset,
    make_item,
    make_label,
    make_quick_post_processor,
    ok,
    png_with_words,
    problem,
    stored_files,
    timestamps,
    upload,
    version_path,
)

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def test_create_answers_the_dataset_with_a_first_version_v1(client):
    dataset = make_dataset(client, name="cats", description="d", notes="n", content_type="text")

    assert uuid.UUID(dataset["id"])
    assert (dataset["name"], dataset["description"], dataset["notes"]) == ("cats", "d", "n")
    assert dataset["content_type"] == "text"
    assert dataset["multi_label"] is False and dataset["default_splits"] is False
    [version] = dataset["versions"]
    assert version["name"] == "v1"
    assert version["dataset_id"] == dataset["id"]
    assert version["splits"] == [] and version["labels"] == []
    assert version["default_split"] == ""


def test_default_splits_gives_train_valid_test_and_sets_the_default_split(client):
    dataset = make_dataset(client, default_splits=True)

    version = first_version(dataset)
    assert dataset["default_splits"] is True
    assert [split["name"] for split in version["splits"]] == ["train", "valid", "test"]
    train = version["splits"][0]
    assert version["default_split"] == train["id"]
    assert train["version_id"] == version["id"]
    assert set(train) == {
        "id",
        "created_at",
        "updated_at",
        "name",
        "description",
        "version_id",
        "user_id",
    }


def test_get_answers_what_create_answered(client):
    dataset = make_dataset(client, default_splits=True)

    assert ok(client.get(f"/datasets/{dataset['id']}")) == dataset


def test_timestamps_are_utc_with_a_z_and_strings_are_never_null(client):
    dataset = make_dataset(client, default_splits=True)

    stamps = timestamps(dataset)
    assert len(stamps) == 2 + 2 + 3 * 2, stamps  # dataset, version, three splits
    for stamp in stamps:
        assert RFC3339_UTC.match(stamp), stamp
    assert find_nulls(dataset) == []
    assert isinstance(dataset["user_id"], str) and dataset["user_id"]


def test_null_strings_in_the_body_count_as_not_given(client):
    dataset = make_dataset(client, name=None, description=None, notes=None)

    assert (dataset["name"], dataset["description"], dataset["notes"]) == ("", "", "")


def test_read_only_and_unknown_fields_in_the_body_are_ignored(client):
    body = {
        "name": "kept",
        "id": "not even a uuid",
        "created_at": "yesterday",
        "updated_at": None,
        "user_id": 12345,
        "versions": [{"name": "v9"}],
        "colour": "blue",
    }

    dataset = ok(client.post("/datasets", json=body), 201)

    assert dataset["name"] == "kept"
    assert dataset["id"] != body["id"]
    assert dataset["user_id"] != "12345"
    assert [version["name"] for version in dataset["versions"]] == ["v1"]
    assert "colour" not in dataset


def test_invalid_content_type_is_422(client):
    body = problem(client.post("/datasets", json={"name": "x", "content_type": "videos"}), 422)

    assert ["body", "content_type"] in error_locs(body)


def test_put_is_partial(client):
    dataset = make_dataset(client, name="old", description="keep me", content_type="text")

    updated = ok(client.put(f"/datasets/{dataset['id']}", json={"name": "new", "notes": None}))

    assert updated["name"] == "new"
    assert updated["description"] == "keep me"
    assert updated["content_type"] == "text"
    assert updated["updated_at"] >= dataset["updated_at"]
    assert ok(client.get(f"/datasets/{dataset['id']}")) == updated


def test_put_ignores_read_only_fields(client):
    dataset = make_dataset(client)
    body = {**dataset, "id": str(uuid.uuid4()), "user_id": str(uuid.uuid4()), "name": "renamed"}

    updated = ok(client.put(f"/datasets/{dataset['id']}", json=body))

    assert updated["id"] == dataset["id"]
    assert updated["user_id"] == dataset["user_id"]
    assert updated["created_at"] == dataset["created_at"]
    assert updated["name"] == "renamed"


def test_delete_answers_the_deleted_dataset_then_get_is_404(client):
    dataset = make_dataset(client, default_splits=True)

    deleted = ok(client.delete(f"/datasets/{dataset['id']}"))

    assert deleted["id"] == dataset["id"]
    assert deleted["name"] == dataset["name"]
    assert [v["id"] for v in deleted["versions"]] == [v["id"] for v in dataset["versions"]]
    problem(client.get(f"/datasets/{dataset['id']}"), 404)
    problem(client.get(version_path(dataset)), 404)
    problem(client.delete(f"/datasets/{dataset['id']}"), 404)


def test_delete_takes_items_and_their_files_with_it(client):
    dataset = make_dataset(client, default_splits=True)
    before = stored_files()
    make_quick_post_processor(client, dataset)
    item = make_item(client, dataset)
    ok(upload(client, dataset, item, png_with_words("gone")))
    make_annotation(client, dataset, make_label(client, dataset), item)
    assert len(stored_files() - before) == 1

    ok(client.delete(f"/datasets/{dataset['id']}"))

    assert stored_files() == before
    problem(client.get(item_path(dataset, item)), 404)
    problem(client.get(f"/datasets/{dataset['id']}/post-processors"), 404)


def test_unknown_dataset_is_404(client):
    problem(client.get(f"/datasets/{uuid.uuid4()}"), 404)
    problem(client.put(f"/datasets/{uuid.uuid4()}", json={"name": "x"}), 404)


def test_list_is_a_plain_array_with_x_total_count(client):
    assert client.get("/datasets").json() == []
    created = [make_dataset(client, name=f"d{n}") for n in range(3)]

    response = client.get("/datasets")

    listed = ok(response)
    assert isinstance(listed, list)
    assert response.headers["X-Total-Count"] == "3"
    assert [d["id"] for d in listed] == [d["id"] for d in created]
    assert listed[0] == created[0]


def test_paging_with_page_size_and_page_count(client):
    created = [make_dataset(client, name=f"d{n}")["id"] for n in range(5)]

    pages = []
    for index in range(3):
        response = client.get("/datasets", params={"page_size": 2, "page_count": index})
        assert response.headers["X-Total-Count"] == "5"
        pages.append([d["id"] for d in ok(response)])

    assert pages == [created[0:2], created[2:4], created[4:5]]
    assert ok(client.get("/datasets", params={"page_size": 2, "page_count": 3})) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("page_size", "0"),
        ("page_size", "1001"),
        ("page_size", "ten"),
        ("page_size", "1.5"),
        ("page_count", "-1"),
        ("page_count", "first"),
    ],
)
def test_bad_paging_parameters_are_422(client, name, value):
    body = problem(client.get("/datasets", params={name: value}), 422)

    assert error_locs(body) == [["query", name]]


def test_page_size_bounds_are_inclusive(client):
    make_dataset(client)

    assert len(ok(client.get("/datasets", params={"page_size": 1}))) == 1
    assert len(ok(client.get("/datasets", params={"page_size": 1000}))) == 1

"""The versions of a dataset: /datasets/{dataset_id}/versions."""

import uuid

from tests.builders import (
    error_locs,
    find_nulls,
    first_version,
    item_path,
    make_annotation,
    make_dataset,
    make_item,
    make_label,
    make_split,
    ok,
    problem,
    stored_files,
    upload,
    version_path,
)


def test_create_a_second_version(client):
    dataset = make_dataset(client)

    version = ok(
        client.post(
            f"/datasets/{dataset['id']}/versions",
            json={"name": "v2", "description": "again", "config": '{"a": 1}'},
        ),
        201,
    )

    assert version["name"] == "v2"
    assert version["description"] == "again"
    assert version["config"] == '{"a": 1}'
    assert version["dataset_id"] == dataset["id"]
    assert version["labels"] == [] and version["splits"] == []
    assert version["default_split"] == ""
    assert find_nulls(version) == []
    path = f"/datasets/{dataset['id']}/versions/{version['id']}"
    assert ok(client.get(path)) == version
    names = [v["name"] for v in ok(client.get(f"/datasets/{dataset['id']}"))["versions"]]
    assert names == ["v1", "v2"]


def test_a_new_version_cannot_name_a_default_split(client):
    dataset = make_dataset(client, default_splits=True)
    split_id = first_version(dataset)["default_split"]

    body = problem(
        client.post(f"/datasets/{dataset['id']}/versions", json={"default_split": split_id}), 422
    )

    assert error_locs(body) == [["body", "default_split"]]


def test_list_versions_with_x_total_count(client):
    dataset = make_dataset(client)
    ok(client.post(f"/datasets/{dataset['id']}/versions", json={"name": "v2"}), 201)

    response = client.get(f"/datasets/{dataset['id']}/versions")

    assert [v["name"] for v in ok(response)] == ["v1", "v2"]
    assert response.headers["X-Total-Count"] == "2"
    paged = client.get(f"/datasets/{dataset['id']}/versions", params={"page_size": 1})
    assert [v["name"] for v in ok(paged)] == ["v1"]
    assert paged.headers["X-Total-Count"] == "2"


def test_put_version_is_partial(client):
    dataset = make_dataset(client)
    ok(client.put(version_path(dataset), json={"description": "first", "config": "c"}))

    updated = ok(client.put(version_path(dataset), json={"name": "renamed"}))

    assert updated["name"] == "renamed"
    assert updated["description"] == "first"
    assert updated["config"] == "c"


def test_put_version_default_split(client):
    dataset = make_dataset(client, default_splits=True)
    test_split = first_version(dataset)["splits"][2]

    updated = ok(client.put(version_path(dataset), json={"default_split": test_split["id"]}))

    assert updated["default_split"] == test_split["id"]


def test_default_split_is_stored_in_its_canonical_form(client):
    dataset = make_dataset(client, default_splits=True)
    test_split = first_version(dataset)["splits"][2]
    shouted = test_split["id"].upper().replace("-", "")

    updated = ok(client.put(version_path(dataset), json={"default_split": shouted}))
    assert updated["default_split"] == test_split["id"]

    # Deleting that split clears it, and items can still be created.
    ok(client.delete(f"{version_path(dataset)}/splits/{test_split['id']}"))
    assert ok(client.get(version_path(dataset)))["default_split"] == ""
    item = ok(client.post(version_path(dataset) + "/items", json={"name": "after"}), 201)
    assert item["splits"] == []


def test_put_version_default_split_of_another_version_is_422(client):
    dataset = make_dataset(client)
    other = make_dataset(client, default_splits=True)
    foreign = first_version(other)["default_split"]

    for value in (foreign, str(uuid.uuid4()), "not-a-uuid"):
        body = problem(client.put(version_path(dataset), json={"default_split": value}), 422)
        assert error_locs(body) == [["body", "default_split"]], value


def test_delete_version_with_a_split_answers_it_then_404(client):
    dataset = make_dataset(client)
    make_split(client, dataset, name="only")

    deleted = ok(client.delete(version_path(dataset)))

    assert deleted["id"] == first_version(dataset)["id"]
    assert [split["name"] for split in deleted["splits"]] == ["only"]
    problem(client.get(version_path(dataset)), 404)
    assert ok(client.get(f"/datasets/{dataset['id']}"))["versions"] == []


def test_delete_version_takes_its_items_and_files_with_it(client):
    dataset = make_dataset(client, default_splits=True)
    before = stored_files()
    item = make_item(client, dataset)
    ok(upload(client, dataset, item, b"some text"))
    make_annotation(client, dataset, make_label(client, dataset), item)

    ok(client.delete(version_path(dataset)))

    assert stored_files() == before
    problem(client.get(item_path(dataset, item)), 404)
    assert ok(client.get(f"/datasets/{dataset['id']}"))["name"] == dataset["name"]


def test_delete_empty_version_answers_it_then_404(client):
    dataset = make_dataset(client)

    deleted = ok(client.delete(version_path(dataset)))

    assert deleted["id"] == first_version(dataset)["id"]
    problem(client.get(version_path(dataset)), 404)
    assert ok(client.get(f"/datasets/{dataset['id']}"))["versions"] == []


def test_version_of_another_dataset_is_404(client):
    dataset = make_dataset(client)
    other = make_dataset(client)

    path = f"/datasets/{other['id']}/versions/{first_version(dataset)['id']}"
    problem(client.get(path), 404)

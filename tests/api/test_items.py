"""Dataset items: .../versions/{version_id}/items, and deleting one through a split."""

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
    make_quick_post_processor,
    make_split,
    ok,
    png_with_words,
    problem,
    stored_files,
    upload,
    version_path,
)

NO_JOBS = {"pending": 0, "processing": 0, "completed": 0, "failed": 0, "total": 0}
ITEM_FIELDS = {
    "id",
    "created_at",
    "updated_at",
    "name",
    "description",
    "user_id",
    "text",
    "splits",
    "annotations",
    "extension",
    "version",
}


def split_ids(item):
    return [split["id"] for split in item["splits"]]


def test_create_answers_the_item(client):
    dataset = make_dataset(client)

    item = make_item(client, dataset, name="n", description="d", text="t")

    assert set(item) == ITEM_FIELDS
    assert (item["name"], item["description"], item["text"]) == ("n", "d", "t")
    assert item["extension"] == ""
    assert item["version"] == 1
    assert item["splits"] == [] and item["annotations"] == []
    assert item["user_id"] == dataset["user_id"]
    assert find_nulls(item) == []
    assert item["created_at"].endswith("Z") and item["updated_at"].endswith("Z")


def test_read_only_fields_in_the_body_are_ignored(client):
    dataset = make_dataset(client)
    body = {
        "name": "x",
        "id": str(uuid.uuid4()),
        "created_at": None,
        "user_id": "someone else",
        "version": 42,
        "job_status": {"failed": 9},
        "annotations": [{"label_id": str(uuid.uuid4())}],
        "unknown": [1, 2, 3],
    }

    item = ok(client.post(version_path(dataset) + "/items", json=body), 201)

    assert item["id"] != body["id"]
    assert item["version"] == 1
    assert item["user_id"] == dataset["user_id"]
    assert item["annotations"] == []


def test_create_joins_the_given_splits(client):
    dataset = make_dataset(client, default_splits=True)
    _train, valid, test = first_version(dataset)["splits"]

    item = make_item(client, dataset, splits=[{"id": valid["id"]}, {"id": test["id"], "x": 1}])

    assert item["splits"] == [valid, test], "splits come back whole"


def test_create_without_splits_joins_the_default_split(client):
    dataset = make_dataset(client, default_splits=True)
    train = first_version(dataset)["splits"][0]

    assert split_ids(make_item(client, dataset)) == [train["id"]]
    assert split_ids(make_item(client, dataset, splits=None)) == [train["id"]]


def test_create_without_a_default_split_joins_none(client):
    dataset = make_dataset(client)
    make_split(client, dataset)

    assert make_item(client, dataset)["splits"] == []


def test_create_with_an_unknown_split_is_422_naming_it(client):
    dataset = make_dataset(client, default_splits=True)
    train = first_version(dataset)["splits"][0]
    body = {"name": "x", "splits": [{"id": train["id"]}, {"id": str(uuid.uuid4())}]}

    answer = problem(client.post(version_path(dataset) + "/items", json=body), 422)

    assert error_locs(answer) == [["body", "splits", 1, "id"]]
    assert ok(client.get(version_path(dataset) + "/items")) == [], "nothing was created"


def test_create_with_a_split_of_another_version_is_422(client):
    dataset = make_dataset(client)
    other = make_dataset(client, default_splits=True)
    body = {"splits": [{"id": first_version(other)["default_split"]}]}

    answer = problem(client.post(version_path(dataset) + "/items", json=body), 422)

    assert error_locs(answer) == [["body", "splits", 0, "id"]]


def test_create_with_a_malformed_split_id_is_422(client):
    dataset = make_dataset(client)

    answer = problem(
        client.post(version_path(dataset) + "/items", json={"splits": [{"id": "train"}]}), 422
    )

    assert error_locs(answer) == [["body", "splits", 0, "id"]]


def test_get_has_all_zero_job_status(client):
    dataset = make_dataset(client, default_splits=True)
    item = make_item(client, dataset)

    got = ok(client.get(item_path(dataset, item)))

    assert got.pop("job_status") == NO_JOBS
    assert got == item


def test_unknown_item_or_item_of_another_version_is_404(client):
    dataset = make_dataset(client)
    other = make_dataset(client)
    item = make_item(client, dataset)

    problem(client.get(f"{version_path(dataset)}/items/{uuid.uuid4()}"), 404)
    problem(client.get(f"{version_path(other)}/items/{item['id']}"), 404)
    problem(client.put(f"{version_path(other)}/items/{item['id']}", json={"name": "x"}), 404)


# --- updating ---------------------------------------------------------------


def test_put_updates_fields_and_bumps_version(client):
    dataset = make_dataset(client)
    item = make_item(client, dataset, name="old", description="keep", text="old text")

    updated = ok(client.put(item_path(dataset, item), json={"name": "new", "text": "new text"}))

    assert updated["name"] == "new"
    assert updated["text"] == "new text"
    assert updated["description"] == "keep"
    assert updated["version"] == item["version"] + 1
    assert updated["created_at"] == item["created_at"]
    assert updated["updated_at"] >= item["updated_at"]
    got = ok(client.get(item_path(dataset, item)))
    got.pop("job_status")
    assert got == updated


def test_put_ignores_read_only_fields(client):
    dataset = make_dataset(client)
    item = make_item(client, dataset)
    body = {**item, "id": str(uuid.uuid4()), "version": 99, "name": "renamed", "annotations": None}

    updated = ok(client.put(item_path(dataset, item), json=body))

    assert updated["id"] == item["id"]
    assert updated["version"] == 2
    assert updated["name"] == "renamed"


def test_put_changes_splits_only_when_given(client):
    dataset = make_dataset(client, default_splits=True)
    train, valid, test = first_version(dataset)["splits"]
    item = make_item(client, dataset)

    renamed = ok(client.put(item_path(dataset, item), json={"name": "x"}))
    assert split_ids(renamed) == [train["id"]]

    moved = ok(client.put(item_path(dataset, item), json={"splits": [{"id": valid["id"]}, test]}))
    assert split_ids(moved) == [valid["id"], test["id"]]

    emptied = ok(client.put(item_path(dataset, item), json={"splits": []}))
    assert emptied["splits"] == []


def test_put_with_an_unknown_split_is_422_and_changes_nothing(client):
    dataset = make_dataset(client, default_splits=True)
    item = make_item(client, dataset)
    body = {"name": "changed", "splits": [{"id": str(uuid.uuid4())}]}

    answer = problem(client.put(item_path(dataset, item), json=body), 422)

    assert error_locs(answer) == [["body", "splits", 0, "id"]]
    got = ok(client.get(item_path(dataset, item)))
    assert (got["name"], got["version"], got["splits"]) == (
        item["name"],
        item["version"],
        item["splits"],
    )


def test_put_with_a_too_long_extension_is_422(client):
    dataset = make_dataset(client)
    item = make_item(client, dataset)

    answer = problem(client.put(item_path(dataset, item), json={"extension": "x" * 21}), 422)

    assert error_locs(answer) == [["body", "extension"]]


# --- deleting through a split -----------------------------------------------


def delete_path(dataset, split_id, item):
    return f"{version_path(dataset)}/splits/{split_id}/items/{item['id']}"


def test_delete_answers_the_item_as_it_was_then_404(client):
    dataset = make_dataset(client, default_splits=True)
    train = first_version(dataset)["default_split"]
    item = make_item(client, dataset, name="doomed", text="t")
    other = make_item(client, dataset, name="stays")

    deleted = ok(client.delete(delete_path(dataset, train, item)))

    assert deleted == item
    problem(client.get(item_path(dataset, item)), 404)
    problem(client.delete(delete_path(dataset, train, item)), 404)
    assert [i["id"] for i in ok(client.get(version_path(dataset) + "/items"))] == [other["id"]]


def test_delete_through_a_split_the_item_is_not_in_is_404_and_keeps_it(client):
    dataset = make_dataset(client, default_splits=True)
    valid = first_version(dataset)["splits"][1]
    item = make_item(client, dataset)  # in train only

    problem(client.delete(delete_path(dataset, valid["id"], item)), 404)
    problem(client.delete(delete_path(dataset, str(uuid.uuid4()), item)), 404)

    assert ok(client.get(item_path(dataset, item)))["id"] == item["id"]


def test_delete_removes_the_file_and_jobs(client):
    dataset = make_dataset(client, default_splits=True)
    train = first_version(dataset)["default_split"]
    post_processor = make_quick_post_processor(client, dataset)
    item = make_item(client, dataset)
    before = stored_files()
    ok(upload(client, dataset, item, png_with_words("bye")))
    assert len(stored_files() - before) == 1

    ok(client.delete(delete_path(dataset, train, item)))

    problem(client.get(item_path(dataset, item) + "/download"), 404)
    assert stored_files() - before == set(), "the stored file is gone"
    jobs = client.get(
        f"/datasets/{dataset['id']}/post-processors/jobs",
        params={"post_processor_id": post_processor["id"]},
    )
    assert ok(jobs) == [] and jobs.headers["X-Total-Count"] == "0"


def test_delete_removes_the_annotations(client):
    dataset = make_dataset(client, default_splits=True)
    train = first_version(dataset)["default_split"]
    item = make_item(client, dataset)
    annotation = make_annotation(client, dataset, make_label(client, dataset), item)

    deleted = ok(client.delete(delete_path(dataset, train, item)))

    assert deleted["annotations"] == [annotation]
    annotation_path = f"{version_path(dataset)}/annotations/{annotation['id']}"
    problem(client.delete(annotation_path), 404)

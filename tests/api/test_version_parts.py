"""The splits, labels and annotations of a dataset version."""

import json
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
    make_split,
    ok,
    problem,
    version_path,
)

# --- splits and labels: the same five routes each ---------------------------


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("splits", {"name": "holdout", "description": "kept aside"}),
        (
            "labels",
            {
                "name": "cat",
                "description": "a cat",
                "color": "#ff0000",
                "index": 3,
                "shortcut": "c",
            },
        ),
    ],
)
def test_create_get_and_list(client, kind, fields):
    dataset = make_dataset(client)
    path = f"{version_path(dataset)}/{kind}"

    created = ok(client.post(path, json={**fields, "id": "ignored", "user_id": None}), 201)

    assert {name: created[name] for name in fields} == fields
    assert created["version_id"] == first_version(dataset)["id"]
    assert created["user_id"] == dataset["user_id"]
    assert find_nulls(created) == []
    assert ok(client.get(f"{path}/{created['id']}")) == created
    response = client.get(path)
    assert ok(response) == [created]
    assert response.headers["X-Total-Count"] == "1"
    version = ok(client.get(version_path(dataset)))
    assert version[kind] == [created], "the version carries its whole children"


@pytest.mark.parametrize("kind", ["splits", "labels"])
def test_put_is_partial(client, kind):
    dataset = make_dataset(client)
    path = f"{version_path(dataset)}/{kind}"
    created = ok(client.post(path, json={"name": "old", "description": "keep"}), 201)

    updated = ok(client.put(f"{path}/{created['id']}", json={"name": "new", "description": None}))

    assert updated["name"] == "new"
    assert updated["description"] == "keep"
    assert ok(client.get(f"{path}/{created['id']}")) == updated


@pytest.mark.parametrize("kind", ["splits", "labels"])
def test_delete_answers_the_deleted_row_then_404(client, kind):
    dataset = make_dataset(client)
    path = f"{version_path(dataset)}/{kind}"
    created = ok(client.post(path, json={"name": "gone"}), 201)

    assert ok(client.delete(f"{path}/{created['id']}")) == created

    problem(client.get(f"{path}/{created['id']}"), 404)
    problem(client.put(f"{path}/{created['id']}", json={"name": "x"}), 404)
    problem(client.delete(f"{path}/{created['id']}"), 404)
    assert ok(client.get(path)) == []


@pytest.mark.parametrize("kind", ["splits", "labels"])
def test_a_row_of_another_version_is_404(client, kind):
    dataset = make_dataset(client)
    other = make_dataset(client)
    created = ok(client.post(f"{version_path(other)}/{kind}", json={"name": "x"}), 201)

    problem(client.get(f"{version_path(dataset)}/{kind}/{created['id']}"), 404)
    problem(client.get(f"{version_path(dataset)}/{kind}/{uuid.uuid4()}"), 404)


def test_list_labels_pages(client):
    dataset = make_dataset(client)
    created = [make_label(client, dataset, name=f"l{n}", index=n)["id"] for n in range(3)]

    response = client.get(f"{version_path(dataset)}/labels", params={"page_size": 2})

    assert [label["id"] for label in ok(response)] == created[:2]
    assert response.headers["X-Total-Count"] == "3"


def test_label_index_must_be_an_integer(client):
    dataset = make_dataset(client)

    body = problem(client.post(f"{version_path(dataset)}/labels", json={"index": "first"}), 422)

    assert error_locs(body) == [["body", "index"]]


def test_deleting_the_default_split_clears_default_split(client):
    dataset = make_dataset(client, default_splits=True)
    train = first_version(dataset)["splits"][0]

    ok(client.delete(f"{version_path(dataset)}/splits/{train['id']}"))

    version = ok(client.get(version_path(dataset)))
    assert version["default_split"] == ""
    assert [split["name"] for split in version["splits"]] == ["valid", "test"]
    item = make_item(client, dataset)
    assert item["splits"] == [], "no default split left to join"


def test_deleting_a_split_takes_items_out_of_it(client):
    dataset = make_dataset(client)
    split = make_split(client, dataset)
    item = make_item(client, dataset, splits=[{"id": split["id"]}])

    ok(client.delete(f"{version_path(dataset)}/splits/{split['id']}"))

    assert ok(client.get(item_path(dataset, item)))["splits"] == []


# --- annotations ------------------------------------------------------------


def plain_annotation(client, dataset):
    """An annotation, without a split, of a new label and a new item of `dataset`."""
    return make_annotation(client, dataset, make_label(client, dataset), make_item(client, dataset))


def annotation_path(dataset, annotation):
    """The path of an annotation in the first version of `dataset`."""
    return f"{version_path(dataset)}/annotations/{annotation['id']}"


def test_create_annotation_shows_on_its_item(client):
    dataset = make_dataset(client, default_splits=True)
    label = make_label(client, dataset)
    item = make_item(client, dataset)
    split_id = first_version(dataset)["default_split"]
    box = json.dumps({"x": 1, "y": 2, "width": 30, "height": 40})

    annotation = make_annotation(
        client, dataset, label, item, split_id=split_id, coordinates=box, id="ignored"
    )

    assert annotation["label_id"] == label["id"]
    assert annotation["item_id"] == item["id"]
    assert annotation["split_id"] == split_id
    assert annotation["coordinates"] == box
    assert annotation["user_id"] == dataset["user_id"]
    assert find_nulls(annotation) == []
    assert ok(client.get(item_path(dataset, item)))["annotations"] == [annotation]


def test_annotation_without_a_split_has_split_id_empty_string(client):
    dataset = make_dataset(client)

    annotation = plain_annotation(client, dataset)

    assert annotation["split_id"] == ""
    assert annotation["coordinates"] == ""


def test_annotation_needs_label_and_item(client):
    dataset = make_dataset(client)

    body = problem(client.post(f"{version_path(dataset)}/annotations", json={}), 422)

    assert sorted(error_locs(body)) == [["body", "item_id"], ["body", "label_id"]]


def test_annotation_with_parts_of_another_version_is_422(client):
    dataset = make_dataset(client)
    other = make_dataset(client, default_splits=True)
    foreign = {
        "label_id": make_label(client, other)["id"],
        "item_id": make_item(client, other)["id"],
        "split_id": first_version(other)["default_split"],
    }

    response = client.post(f"{version_path(dataset)}/annotations", json=foreign)

    body = problem(response, 422)
    assert sorted(error_locs(body)) == [
        ["body", "item_id"],
        ["body", "label_id"],
        ["body", "split_id"],
    ]


@pytest.mark.parametrize("field", ["label_id", "item_id", "split_id"])
def test_each_foreign_or_unknown_part_is_named(client, field):
    dataset = make_dataset(client, default_splits=True)
    body = {
        "label_id": make_label(client, dataset)["id"],
        "item_id": make_item(client, dataset)["id"],
        "split_id": first_version(dataset)["default_split"],
        field: str(uuid.uuid4()),
    }

    answer = problem(client.post(f"{version_path(dataset)}/annotations", json=body), 422)

    assert error_locs(answer) == [["body", field]]


def test_put_annotation_is_partial(client):
    dataset = make_dataset(client, default_splits=True)
    item = make_item(client, dataset)
    first, second = make_label(client, dataset, name="a"), make_label(client, dataset, name="b")
    annotation = make_annotation(client, dataset, first, item, coordinates='{"start":0,"end":4}')
    path = annotation_path(dataset, annotation)

    moved = ok(client.put(path, json={"label_id": second["id"], "item_id": None}))

    assert moved["label_id"] == second["id"]
    assert moved["coordinates"] == '{"start":0,"end":4}'
    assert moved["item_id"] == item["id"]
    reshaped = ok(client.put(path, json={"coordinates": ""}))
    assert reshaped["coordinates"] == ""
    assert reshaped["label_id"] == second["id"]


def test_put_annotation_with_a_label_of_another_version_is_422(client):
    dataset = make_dataset(client)
    other = make_dataset(client)
    path = annotation_path(dataset, plain_annotation(client, dataset))

    body = problem(client.put(path, json={"label_id": make_label(client, other)["id"]}), 422)

    assert error_locs(body) == [["body", "label_id"]]


def test_delete_annotation_answers_it_and_removes_it(client):
    dataset = make_dataset(client)
    item = make_item(client, dataset)
    annotation = make_annotation(client, dataset, make_label(client, dataset), item)
    path = annotation_path(dataset, annotation)

    assert ok(client.delete(path)) == annotation

    assert ok(client.get(item_path(dataset, item)))["annotations"] == []
    problem(client.delete(path), 404)
    problem(client.put(path, json={"coordinates": ""}), 404)


def test_deleting_a_label_deletes_its_annotations(client):
    dataset = make_dataset(client)
    item = make_item(client, dataset)
    label = make_label(client, dataset)
    make_annotation(client, dataset, label, item)

    ok(client.delete(f"{version_path(dataset)}/labels/{label['id']}"))

    assert ok(client.get(item_path(dataset, item)))["annotations"] == []


def test_annotation_of_another_version_path_is_404(client):
    dataset = make_dataset(client)
    other = make_dataset(client)
    annotation = plain_annotation(client, dataset)

    path = annotation_path(other, annotation)
    problem(client.put(path, json={"coordinates": ""}), 404)
    problem(client.delete(path), 404)

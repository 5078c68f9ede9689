"""A version's frozen copy: POST .../versions/{version_id}/new."""

import uuid

from shared.db import session_scope
from shared.models import DatasetItem
from shared.storage import get_storage
from tests.builders import (
    item_path,
    make_dataset,
    make_item,
    ok,
    problem,
    upload,
    version_path,
)
from tests.fixtures import wait_until


def copy_of(client, dataset, version_id=None):
    version_id = version_id or dataset["versions"][0]["id"]
    return ok(client.post(f"/datasets/{dataset['id']}/versions/{version_id}/new", json={}), 201)


def at(dataset, version):
    return f"/datasets/{dataset['id']}/versions/{version['id']}"


def listed(client, dataset, version):
    return ok(client.get(at(dataset, version) + "/items"))


def test_a_copy_holds_the_splits_labels_items_annotations_and_states_as_they_were(client):
    dataset = make_dataset(client, default_splits=True)
    source = dataset["versions"][0]
    train = source["splits"][0]
    cat = ok(client.post(version_path(dataset) + "/labels", json={"name": "cat"}), 201)
    item = make_item(client, dataset, name="photo", text="a cat", splits=[{"id": train["id"]}])
    box = '{"x":1,"y":2,"width":3,"height":4}'
    body = {"label_id": cat["id"], "item_id": item["id"], "coordinates": box}
    ok(client.post(version_path(dataset) + "/annotations", json=body), 201)
    ok(client.put(item_path(dataset, item) + "/state", json={"state": "reviewed"}))
    ok(upload(client, dataset, item, b"the file's bytes\n", "notes.txt"))

    copy = copy_of(client, dataset)

    assert copy["id"] != source["id"] and copy["name"] == "v2"
    assert [s["name"] for s in copy["splits"]] == ["train", "valid", "test"]
    assert copy["default_split"] == copy["splits"][0]["id"]
    assert [label["name"] for label in copy["labels"]] == ["cat"]
    [copied] = listed(client, dataset, copy)
    assert copied["id"] != item["id"]
    assert (copied["name"], copied["text"], copied["extension"]) == ("photo", "a cat", "txt")
    assert [s["id"] for s in copied["splits"]] == [copy["splits"][0]["id"]]
    [annotation] = copied["annotations"]
    assert (annotation["label_id"], annotation["coordinates"]) == (copy["labels"][0]["id"], box)
    state = ok(client.get(at(dataset, copy) + f"/items/{copied['id']}/state"))
    assert (state["state"], state["version"]) == ("reviewed", 1)
    download = client.get(at(dataset, copy) + f"/items/{copied['id']}/download")
    assert download.content == b"the file's bytes\n"


def test_later_changes_to_either_do_not_show_in_the_other(client):
    dataset = make_dataset(client, default_splits=True)
    source = dataset["versions"][0]
    train = source["splits"][0]
    item = make_item(client, dataset, name="before", splits=[{"id": train["id"]}])
    copy = copy_of(client, dataset)
    [copied] = listed(client, dataset, copy)

    ok(client.put(item_path(dataset, item), json={"name": "changed in the source"}))
    ok(client.put(item_path(dataset, item) + "/state", json={"state": "source"}))
    ok(client.post(version_path(dataset) + "/labels", json={"name": "new in the source"}), 201)
    copy_item = at(dataset, copy) + f"/items/{copied['id']}"
    ok(client.put(copy_item, json={"text": "changed in the copy"}))

    assert ok(client.get(copy_item))["name"] == "before"
    assert ok(client.get(copy_item + "/state"))["version"] == 0
    assert ok(client.get(at(dataset, copy)))["labels"] == []
    assert ok(client.get(item_path(dataset, item)))["text"] == ""


def test_a_shared_file_stays_until_no_version_uses_it(client):
    dataset = make_dataset(client, default_splits=True)
    train = dataset["versions"][0]["splits"][0]
    item = make_item(client, dataset, splits=[{"id": train["id"]}])
    ok(upload(client, dataset, item, b"shared bytes\n", "a.txt"))
    copy = copy_of(client, dataset)
    [copied] = listed(client, dataset, copy)

    ok(client.delete(f"{version_path(dataset)}/splits/{train['id']}/items/{item['id']}"))

    copy_item = at(dataset, copy) + f"/items/{copied['id']}"
    assert client.get(copy_item + "/download").content == b"shared bytes\n"
    ok(client.delete(f"/datasets/{dataset['id']}/versions/{dataset['versions'][0]['id']}"))
    assert client.get(copy_item + "/download").content == b"shared bytes\n"
    with session_scope() as session:
        key = session.get(DatasetItem, uuid.UUID(copied["id"])).file_key
    assert get_storage().size(key) == len(b"shared bytes\n")

    ok(client.delete(f"/datasets/{dataset['id']}/versions/{copy['id']}"))

    wait_until(lambda: get_storage().size(key) is None, 10, "the file's removal")


def test_another_users_version_is_404(client, other_client):
    dataset = make_dataset(client)
    problem(
        other_client.post(
            f"/datasets/{dataset['id']}/versions/{dataset['versions'][0]['id']}/new", json={}
        ),
        404,
    )
    assert len(ok(client.get(f"/datasets/{dataset['id']}/versions"))) == 1

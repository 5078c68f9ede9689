"""Item states and label stats through the official client."""

from tests.client.conftest import Seeme

SETUP = """
dataset = client.create_dataset(
    Dataset(name="states", content_type=DatasetContentType.IMAGES, default_splits=True)
)
version = dataset.versions[0]
train = version.splits[0]
item = client.create_dataset_item(dataset.id, version.id, DatasetItem(name="page", splits=[train]))
"""


def test_states_with_if_match_0_then_1_and_a_stale_one(seeme: Seeme):
    out = seeme(
        SETUP
        + """
got = client.get_dataset_item_state(dataset.id, version.id, item.id)
first = client.update_dataset_item_state(dataset.id, version.id, item.id, "labelled", if_match=0)
second = client.update_dataset_item_state(dataset.id, version.id, item.id, "reviewed", if_match=1)
try:
    client.update_dataset_item_state(dataset.id, version.id, item.id, "lost", if_match=1)
    stale = None
except PreconditionFailed as error:
    stale = error.current_version
listed = client.get_dataset_item_states(dataset.id, version.id)
out = {"got": got, "first": first, "second": second, "stale": stale, "listed": listed,
       "item": item.id}
"""
    )
    assert out["got"]["version"] == 0
    assert (out["first"]["version"], out["first"]["state"]) == (1, "labelled")
    assert (out["second"]["version"], out["second"]["state"]) == (2, "reviewed")
    assert out["stale"] == 2
    assert [(s["item_id"], s["state"], s["version"]) for s in out["listed"]] == [
        (out["item"], "reviewed", 2)
    ]


def test_label_stats_by_split(seeme: Seeme):
    out = seeme(
        SETUP
        + """
cat = client.create_dataset_label(dataset.id, version.id, Label(name="cat", version_id=version.id))
client.annotate(
    dataset.id, version.id, Annotation(label_id=cat.id, item_id=item.id, split_id=train.id)
)
client.create_dataset_item(dataset.id, version.id, DatasetItem(name="bare", splits=[train]))
stats = client.get_label_stats(dataset.id, version.id, train.id)
out = {
    "cat": client.get_stats_for_label(stats, cat.id),
    "unlabelled": client.get_stats_for_unlabelled(stats),
}
"""
    )
    assert (out["cat"]["annotation_count"], out["cat"]["item_count"]) == (1, 1)
    assert out["unlabelled"]["item_count"] == 1


def test_a_duplicated_version_is_frozen_against_later_changes(seeme: Seeme):
    out = seeme(
        SETUP
        + """
client.update_dataset_item_state(dataset.id, version.id, item.id, "reviewed", if_match=0)
copy = client.duplicate_dataset_version(dataset.id, version.id)
item.name = "renamed later"
client.update_dataset_item(dataset.id, version.id, item)
client.update_dataset_item_state(dataset.id, version.id, item.id, "changed", if_match=1)
[copied] = client.get_dataset_items(dataset.id, copy.id)
out = {
    "copy": copy,
    "source": version.id,
    "copied": copied,
    "state": client.get_dataset_item_state(dataset.id, copy.id, copied.id),
}
"""
    )
    assert out["copy"]["id"] != out["source"]
    assert [s["name"] for s in out["copy"]["splits"]] == ["train", "valid", "test"]
    assert out["copied"]["name"] == "page"
    assert (out["state"]["state"], out["state"]["version"]) == ("reviewed", 1)

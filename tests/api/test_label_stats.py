"""Label stats: per label of the version, its use in one split."""

from tests.builders import make_dataset, make_item, ok, problem, version_path


def label(client, dataset, name):
    return ok(client.post(version_path(dataset) + "/labels", json={"name": name}), 201)


def annotate(client, dataset, item, label, coordinates=""):
    body = {"label_id": label["id"], "item_id": item["id"], "coordinates": coordinates}
    return ok(client.post(version_path(dataset) + "/annotations", json=body), 201)


def stats(client, dataset, split):
    rows = ok(client.get(f"{version_path(dataset)}/labels/splits/{split['id']}"))
    return {row["label_id"]: row for row in rows}


def test_each_label_counts_its_annotations_and_items_in_the_split(client):
    dataset = make_dataset(client, default_splits=True)
    train, valid, _ = dataset["versions"][0]["splits"]
    cat, dog, bird = (label(client, dataset, name) for name in ("cat", "dog", "bird"))
    box = '{"x":1,"y":1,"width":2,"height":2}'
    two_cats = make_item(client, dataset, splits=[{"id": train["id"]}])
    annotate(client, dataset, two_cats, cat, box)
    annotate(client, dataset, two_cats, cat, box)
    both = make_item(client, dataset, splits=[{"id": train["id"]}])
    annotate(client, dataset, both, cat)
    annotate(client, dataset, both, dog)
    make_item(client, dataset, splits=[{"id": train["id"]}])  # unlabelled
    elsewhere = make_item(client, dataset, splits=[{"id": valid["id"]}])
    annotate(client, dataset, elsewhere, dog)

    rows = stats(client, dataset, train)

    assert set(rows) == {cat["id"], dog["id"], bird["id"], ""}
    counted = {k: (r["count"], r["annotation_count"], r["item_count"]) for k, r in rows.items()}
    assert counted == {
        cat["id"]: (2, 3, 2),
        dog["id"]: (1, 1, 1),
        bird["id"]: (0, 0, 0),
        "": (1, 0, 1),
    }
    assert {row["split_id"] for row in rows.values()} == {train["id"]}
    assert stats(client, dataset, valid)[dog["id"]]["item_count"] == 1


def test_a_split_of_another_version_or_user_is_404(client, other_client):
    dataset = make_dataset(client, default_splits=True)
    other = make_dataset(client, default_splits=True)
    split = other["versions"][0]["splits"][0]

    problem(client.get(f"{version_path(dataset)}/labels/splits/{split['id']}"), 404)
    mine = dataset["versions"][0]["splits"][0]
    problem(other_client.get(f"{version_path(dataset)}/labels/splits/{mine['id']}"), 404)

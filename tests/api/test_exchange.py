"""Export and import: each format's export imported again into a new
dataset gives back the same items, splits, labels and annotations; an
import refuses bad entries by name and keeps the good ones."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import pytest
from PIL import Image

from tests.builders import make_dataset, make_quick_post_processor, ok, problem, version_path

COLOURS = ["red", "green", "blue", "yellow", "purple"]


def png(colour: str, size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def labels_of(client, dataset, *names):
    path = version_path(dataset) + "/labels"
    return {name: ok(client.post(path, json={"name": name}), 201)["id"] for name in names}


def split_ids(dataset):
    return {split["name"]: split["id"] for split in dataset["versions"][0]["splits"]}


def add_item(client, dataset, name, *, text="", file=None, split=None, annotations=()):
    body = {"name": name, "text": text, "splits": [{"id": split}] if split else []}
    item = ok(client.post(version_path(dataset) + "/items", json=body), 201)
    if file is not None:
        files = {"file": (f"{name}-upload.png", file)}
        ok(client.post(f"{version_path(dataset)}/items/{item['id']}/upload", files=files))
    for label_id, coordinates in annotations:
        annotation = {"label_id": label_id, "item_id": item["id"], "coordinates": coordinates}
        ok(client.post(version_path(dataset) + "/annotations", json=annotation), 201)
    return item


def box(x, y, width, height):
    return json.dumps({"x": x, "y": y, "width": width, "height": height})


def span(start, end):
    return json.dumps({"start": start, "end": end})


def download(client, dataset, fmt, split_id=None):
    path = version_path(dataset) + "/download" + (f"/{split_id}" if split_id else "")
    answer = client.get(path, params={"format": fmt} if fmt else None)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    return answer.content


def upload_zip(client, dataset, fmt, data):
    files = {"file": ("dataset.zip", data, "application/x-zip-compressed")}
    return client.post(version_path(dataset) + f"/upload/{fmt}", files=files)


def snapshot(client, dataset, names=True):
    """The version's items as comparable values: name, text, the file's
    sha256, splits, and (label, region rounded to 0.01) annotations."""
    version = ok(client.get(version_path(dataset)))
    labels = {label["id"]: label["name"] for label in version["labels"]}
    rows = []
    for item in ok(client.get(version_path(dataset) + "/items", params={"page_size": 1000})):
        answer = client.get(f"{version_path(dataset)}/items/{item['id']}/download")
        digest = hashlib.sha256(answer.content).hexdigest() if answer.status_code == 200 else None
        annotations = []
        for annotation in item["annotations"]:
            found = json.loads(annotation["coordinates"]) if annotation["coordinates"] else {}
            region = tuple(sorted((k, round(float(v), 2)) for k, v in found.items()))
            annotations.append((labels[annotation["label_id"]], region))
        rows.append(
            (
                item["name"] if names else "",
                item["text"],
                digest,
                tuple(sorted(split["name"] for split in item["splits"])),
                tuple(sorted(annotations)),
            )
        )
    return sorted(rows)


def round_trip(client, source, fmt, content_type="images", names=True):
    data = download(client, source, fmt)
    target = make_dataset(client, name="imported", content_type=content_type)
    report = ok(upload_zip(client, target, fmt, data))
    assert report["refused"] == [], report["refused"]
    assert snapshot(client, target, names) == snapshot(client, source, names)
    return report, zipfile.ZipFile(io.BytesIO(data))


def classified_images(client):
    dataset = make_dataset(client, content_type="images", multi_label=True, default_splits=True)
    splits, labels = split_ids(dataset), labels_of(client, dataset, "cat", "dog")
    add_item(client, dataset, "a", file=png("red"), split=splits["train"],
             annotations=[(labels["cat"], "")])  # fmt: skip
    add_item(client, dataset, "b", file=png("green"), split=splits["valid"],
             annotations=[(labels["dog"], "")])  # fmt: skip
    add_item(client, dataset, "both", file=png("blue"), split=splits["train"],
             annotations=[(labels["cat"], ""), (labels["dog"], "")])  # fmt: skip
    add_item(client, dataset, "neither", file=png("yellow"))
    return dataset


def detected_images(client):
    dataset = make_dataset(client, content_type="images", default_splits=True)
    splits, labels = split_ids(dataset), labels_of(client, dataset, "car", "person")
    add_item(client, dataset, "street", file=png("red"), split=splits["train"],
             annotations=[(labels["car"], box(4, 6, 20, 10)),
                          (labels["person"], box(30, 0, 34, 48))])  # fmt: skip
    add_item(client, dataset, "road", file=png("green", (80, 60)), split=splits["valid"],
             annotations=[(labels["car"], box(0.5, 1.5, 10.25, 7))])  # fmt: skip
    add_item(client, dataset, "empty", file=png("blue"), split=splits["train"])
    return dataset


def test_folders_round_trip_with_splits_and_several_labels(client):
    source = classified_images(client)

    report, archive = round_trip(client, source, "folders")

    assert sorted(archive.namelist()) == [
        "train/cat/a.png",
        "train/cat/both.png",
        "train/dog/both.png",
        "unsplit/unlabelled/neither.png",
        "valid/dog/b.png",
    ]
    assert report["imported"] == 4
    assert sorted(label["name"] for label in report["labels"]) == ["cat", "dog"]


def test_yolo_round_trip_of_boxes(client):
    source = detected_images(client)

    _, archive = round_trip(client, source, "yolo")

    assert archive.read("labels/train/street.txt").decode().splitlines() == [
        "0 0.21875000 0.22916667 0.31250000 0.20833333",
        "1 0.73437500 0.50000000 0.53125000 1.00000000",
    ]
    import yaml

    described = yaml.safe_load(archive.read("data.yaml"))
    assert described["names"] == {0: "car", 1: "person"}
    assert (described["train"], described["val"]) == ("images/train", "images/valid")


def test_yolo_of_a_classification_dataset_is_folders(client):
    _, archive = round_trip(client, classified_images(client), "yolo")

    assert "train/cat/a.png" in archive.namelist()


def test_coco_round_trip_of_boxes(client):
    source = detected_images(client)

    _, archive = round_trip(client, source, "coco")

    coco = json.loads(archive.read("annotations/instances_train.json"))
    assert [c["name"] for c in coco["categories"]] == ["car", "person"]
    street = next(image for image in coco["images"] if image["file_name"] == "street.png")
    assert (street["width"], street["height"]) == (64, 48)
    boxes = sorted(a["bbox"] for a in coco["annotations"] if a["image_id"] == street["id"])
    assert boxes == [[4.0, 6.0, 20.0, 10.0], [30.0, 0.0, 34.0, 48.0]]


def test_csv_round_trip_of_text_and_files(client):
    source = make_dataset(client, content_type="text", default_splits=True)
    splits, labels = split_ids(source), labels_of(client, source, "spam", "ham")
    add_item(client, source, "one", text="Buy now, cheap, with a comma", split=splits["train"],
             annotations=[(labels["spam"], "")])  # fmt: skip
    add_item(client, source, "two", text='A "quoted"\nline', split=splits["test"],
             annotations=[(labels["ham"], ""), (labels["spam"], "")])  # fmt: skip
    add_item(client, source, "three", text="no label, no split")
    add_item(client, source, "scan", file=png("purple"), annotations=[(labels["ham"], "")])

    _, archive = round_trip(client, source, "csv", content_type="text")

    assert sorted(archive.namelist()) == ["dataset.csv", "files/scan.png"]


def test_spacy_ner_round_trip_of_spans(client):
    source = make_dataset(client, content_type="ner", default_splits=True)
    splits = split_ids(source)
    labels = labels_of(client, source, "PERSON", "ORG", "urgent")
    text = "Ada Lovelace wrote to Babbage at the Royal Society."
    add_item(client, source, "letter", text=text, split=splits["train"],
             annotations=[(labels["PERSON"], span(0, 12)), (labels["PERSON"], span(22, 29)),
                          (labels["ORG"], span(37, 50)), (labels["urgent"], "")])  # fmt: skip
    add_item(client, source, "none", text="Nothing to see.", split=splits["valid"])

    # spaCy's training data holds no item names: compared without them.
    _, archive = round_trip(client, source, "spacy-ner", content_type="ner", names=False)

    [example] = json.loads(archive.read("train.json"))
    assert example == [
        text,
        {"entities": [[0, 12, "PERSON"], [22, 29, "PERSON"], [37, 50, "ORG"]],
         "cats": {"urgent": 1.0}},
    ]  # fmt: skip


def test_a_split_alone_and_the_default_format(client):
    source = classified_images(client)

    archive = zipfile.ZipFile(
        io.BytesIO(download(client, source, None, split_ids(source)["train"]))
    )

    assert sorted(archive.namelist()) == [
        "train/cat/a.png",
        "train/cat/both.png",
        "train/dog/both.png",
    ]


def test_an_import_starts_the_post_processors_of_each_file(client, sent):
    source = classified_images(client)
    target = make_dataset(client, content_type="images")
    make_quick_post_processor(client, target)

    report = ok(upload_zip(client, target, "folders", download(client, source, "folders")))

    assert report["imported"] == 4
    jobs = ok(client.get(f"/datasets/{target['id']}/post-processors/jobs"))
    assert len(jobs) == 4 and {job["status"] for job in jobs} <= {"pending", "processing"}


def storage_files():
    from shared.storage import get_storage

    root = getattr(get_storage(), "root", None)
    return sorted(os.listdir(root)) if root is not None and root.exists() else None


def test_bad_entries_are_refused_by_name_and_the_good_ones_imported(client, monkeypatch):
    from shared.settings import get_settings

    monkeypatch.setattr(get_settings(), "max_upload_bytes", 3 * 1024 * 1024)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.yaml", "names: [cat]\n")
        for name, colour, line in [
            ("good", "red", "0 0.5 0.5 0.2 0.2"),
            ("unknown", "green", "3 0.5 0.5 0.2 0.2"),
            ("outside", "blue", "0 0.95 0.5 0.2 0.2"),
        ]:
            archive.writestr(f"images/train/{name}.png", png(colour))
            archive.writestr(f"labels/train/{name}.txt", line + "\n")
        archive.writestr("../escape.png", png("red"))
        archive.writestr("images/train/bomb.png", bytes(2 * 1024 * 1024))
        archive.writestr("images/train/big.png", os.urandom(3 * 1024 * 1024 + 1))
        archive.writestr("images/train/not-an-image.png", b"\x00\x01\x02" * 100)
        archive.writestr("notes.md", "not part of a yolo dataset")
    target = make_dataset(client, content_type="images")
    before = storage_files()

    report = ok(upload_zip(client, target, "yolo", out.getvalue()))

    reasons = refusals(report)
    assert report["imported"] == 1
    assert "class 3 is not in data.yaml's names" in reasons["images/train/unknown.png"]
    assert "a box outside the image" in reasons["images/train/outside.png"]
    assert "'..'" in reasons["../escape.png"]
    assert "zip bomb" in reasons["images/train/bomb.png"]
    assert "over the upload limit" in reasons["images/train/big.png"]
    assert "not recognised" in reasons["images/train/not-an-image.png"]
    assert "not listed" in reasons["notes.md"]
    assert len(reasons) == len(report["refused"]) == 7  # each said once
    [item] = ok(client.get(version_path(target) + "/items"))
    assert item["name"] == "good" and [s["name"] for s in item["splits"]] == ["train"]
    # Nothing of the refused entries stays: one file more, the good one's.
    after = storage_files()
    if before is not None:
        assert len(after) == len(before) + 1


def test_import_errors_of_the_whole_request(client, other_client):
    target = make_dataset(client)

    problem(upload_zip(client, target, "folders", b"not a zip at all"), 422)
    problem(upload_zip(client, target, "tar", b""), 422)
    problem(upload_zip(other_client, target, "folders", b""), 404)
    problem(client.get(version_path(target) + "/download", params={"format": "xml"}), 422)
    problem(other_client.get(version_path(target) + "/download"), 404)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("images/a.png", png("red"))
    problem(upload_zip(client, target, "coco", out.getvalue()), 422)


@pytest.mark.parametrize("fmt", ["folders", "csv", "spacy-ner"])
def test_an_empty_version_exports_an_empty_zip(client, fmt):
    archive = zipfile.ZipFile(io.BytesIO(download(client, make_dataset(client), fmt)))

    assert archive.testzip() is None
    assert all(name.endswith((".csv", ".json")) for name in archive.namelist())


def zip_of(members: dict[str, bytes | str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def refusals(report):
    return {refusal["entry"]: refusal["reason"] for refusal in report["refused"]}


def test_items_of_one_name_and_several_labels_and_splits_come_back_apart(client):
    source = make_dataset(client, content_type="text", multi_label=True, default_splits=True)
    splits, labels = split_ids(source), labels_of(client, source, "cat", "dog")
    add_item(client, source, "x", file=png("red"), split=splits["train"],
             annotations=[(labels["cat"], "")])  # fmt: skip
    add_item(client, source, "x", file=png("green"), split=splits["train"],
             annotations=[(labels["cat"], ""), (labels["dog"], "")])  # fmt: skip
    add_item(client, source, "note", text="a text item", split=splits["valid"])

    # The second x is x-{its id} in the zip: compared without names.
    report, archive = round_trip(client, source, "folders", content_type="text", names=False)
    assert report["imported"] == 3
    assert len([name for name in archive.namelist() if "/x" in name]) == 3
    target = make_dataset(client, content_type="text")
    ok(upload_zip(client, target, "folders", download(client, source, "folders")))
    [note] = [i for i in ok(client.get(version_path(target) + "/items")) if i["name"] == "note"]
    assert (note["text"], note["extension"]) == ("a text item", "")  # a text item, no file


def test_csv_keeps_several_splits(client):
    source = make_dataset(client, content_type="text", default_splits=True)
    splits = split_ids(source)
    item = add_item(client, source, "both", text="in two splits", split=splits["train"])
    body = {"name": "both", "text": "in two splits",
            "splits": [{"id": splits["train"]}, {"id": splits["test"]}]}  # fmt: skip
    ok(client.put(f"{version_path(source)}/items/{item['id']}", json=body))

    round_trip(client, source, "csv", content_type="text")


def test_malformed_entries_are_refused_and_the_rest_imported(client):
    target = make_dataset(client, content_type="text")
    rows = "name,file,labels\none,a.png,cat\ntwo,a.png,cat\n"
    report = ok(
        upload_zip(client, target, "csv", zip_of({"dataset.csv": rows, "a.png": png("red")}))
    )
    assert report["imported"] == 1
    assert "imported already" in refusals(report)["dataset.csv, line 3"]

    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48},
                   {"id": 2, "file_name": "b.png", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": ["a", 0, 1, 1]},
                        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}],
        "categories": [{"id": 1, "name": "car"}, {"id": 2}],
    }  # fmt: skip
    members = {"annotations/instances_train.json": json.dumps(coco)}
    members |= {"images/train/a.png": png("red"), "images/train/b.png": png("blue")}
    report = ok(upload_zip(client, make_dataset(client), "coco", zip_of(members)))
    assert report["imported"] == 1 and len(report["refused"]) == 1
    assert [label["name"] for label in report["labels"]] == ["car"]

    spacy = [["fine", {"entities": []}], ["bad", {"cats": ["x"]}], ["nul\x00", {}]]
    report = ok(upload_zip(client, make_dataset(client), "spacy-ner",
                           zip_of({"train.json": json.dumps(spacy)})))  # fmt: skip
    assert report["imported"] == 1 and len(report["refused"]) == 2

    yolo = {"data.yaml": "names: [cat]\n", "images/a.png": png("red"),
            "labels/a.txt": "0 nan nan nan nan\n"}  # fmt: skip
    dataset = make_dataset(client)
    report = ok(upload_zip(client, dataset, "yolo", zip_of(yolo)))
    assert report["imported"] == 0 and "outside the image" in refusals(report)["images/a.png"]
    # Nothing was imported: not even the labels the archive declares.
    assert report["labels"] == []


def test_a_corrupt_member_is_refused_and_the_others_imported(client):
    data = bytearray(zip_of({"a/one.png": png("red"), "a/two.png": png("green")}))
    # A byte of the second member's data flipped: its CRC no longer matches.
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("a/two.png")
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + 5] ^= 0xFF

    report = ok(upload_zip(client, make_dataset(client), "folders", bytes(data)))

    assert report["imported"] == 1
    assert "cannot be read" in refusals(report)["a/two.png"]


def test_a_zip_declaring_too_many_entries_is_refused_before_reading_them(client, monkeypatch):
    from shared.settings import get_settings

    monkeypatch.setattr(get_settings(), "max_import_entries", 2)
    data = zip_of({f"{n}.txt": "x" for n in range(3)})

    problem(upload_zip(client, make_dataset(client), "folders", data), 413)


def test_an_export_dropped_midway_leaves_no_error():
    from shared.exchange.zipstream import ZipStream

    stream = ZipStream()
    entry = stream.add("big.bin", iter([b"x" * 1000] * 10), compress=False)
    next(entry)
    stream.abort()
    del entry  # collected mid-entry, as a generator of a client gone away
    import gc

    gc.collect()

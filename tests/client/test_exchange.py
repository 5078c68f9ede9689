"""Export and import through the official client: download_dataset in each
format, and a download uploaded again into a new dataset."""

import io
import os

from PIL import Image

from tests.client.conftest import Seeme

SETUP = """
import os
dataset = client.create_dataset(
    Dataset(name="pets", content_type=DatasetContentType.IMAGES, default_splits=True)
)
version = dataset.versions[0]
train, valid = version.splits[0], version.splits[1]
labels = {
    name: client.create_dataset_label(
        dataset.id, version.id, Label(name=name, version_id=version.id)
    )
    for name in ("cat", "dog")
}
for name, split, label in (("a", train, "cat"), ("b", valid, "dog"), ("c", train, "dog")):
    item = client.create_dataset_item(
        dataset.id, version.id, DatasetItem(name=name, splits=[split])
    )
    client.upload_dataset_item_file(dataset.id, version.id, item.id, ".", name + ".png")
    client.annotate(dataset.id, version.id, Annotation(
        label_id=labels[label].id, item_id=item.id, split_id=split.id,
        coordinates='{"x": 2, "y": 3, "width": 10, "height": 8}',
    ))
note = client.create_dataset_item(
    dataset.id, version.id, DatasetItem(name="note", text="A cat sat.", splits=[train])
)
client.annotate(dataset.id, version.id, Annotation(
    label_id=labels["cat"].id, item_id=note.id, split_id=train.id, coordinates=""
))

def files_in(folder):
    return sorted(
        os.path.relpath(os.path.join(root, name), folder)
        for root, _, names in os.walk(folder) for name in names
    )

def items_of(dataset_id, version_id):
    names = {label.id: label.name for label in client.get_dataset_labels(dataset_id, version_id)}
    return sorted(
        (item.name, sorted(names[a.label_id] for a in item.annotations))
        for item in client.get_dataset_items(dataset_id, version_id)
    )
"""


def images(folder):
    for name, colour in (("a", "red"), ("b", "green"), ("c", "blue")):
        out = io.BytesIO()
        Image.new("RGB", (32, 24), colour).save(out, "PNG")
        (folder / f"{name}.png").write_bytes(out.getvalue())


def test_download_dataset_in_each_format(seeme: Seeme, tmp_path):
    images(tmp_path)
    out = seeme(
        SETUP
        + """
out = {}
for fmt in DatasetFormat:
    client.download_dataset(dataset.id, version.id, extract_to_folder="out-" + fmt.value,
                            export_format=fmt)
    out[fmt.value] = files_in("out-" + fmt.value)
client.download_dataset(dataset.id, version.id, split_id=valid.id, extract_to_folder="valid",
                        export_format=DatasetFormat.FOLDERS)
out["valid"] = files_in("valid")
"""
    )
    assert out["folders"] == ["train/cat/a.png", "train/cat/note.txt", "train/dog/c.png",
                              "valid/dog/b.png"]  # fmt: skip
    assert out["yolo"] == [
        "data.yaml",
        "images/train/a.png",
        "images/train/c.png",
        "images/valid/b.png",
        "labels/train/a.txt",
        "labels/train/c.txt",
        "labels/valid/b.txt",
    ]
    assert out["csv"] == ["dataset.csv", "files/a.png", "files/b.png", "files/c.png"]
    assert out["spacy-ner"] == ["train.json"]
    assert out["valid"] == ["valid/dog/b.png"]
    assert not os.path.exists(tmp_path / "dataset.zip")  # the client removed it


def test_an_exported_zip_uploaded_into_a_new_dataset_gives_the_same_items(seeme: Seeme, tmp_path):
    images(tmp_path)
    out = seeme(
        SETUP
        + """
out = {"source": items_of(dataset.id, version.id)}
for fmt in (DatasetFormat.FOLDERS, DatasetFormat.YOLO, DatasetFormat.CSV):
    client.download_dataset(dataset.id, version.id, extract_to_folder="x",
                            remove_download_file=False, export_format=fmt)
    copy = client.create_dataset(Dataset(name="copy", content_type=DatasetContentType.IMAGES))
    imported = client.upload_dataset_version(
        copy.id, copy.versions[0].id, folder=".", filename="dataset.zip", format=fmt
    )
    out[fmt.value] = {
        "labels": sorted(label.name for label in imported.labels),
        "splits": sorted(split.name for split in imported.splits),
        "items": items_of(copy.id, copy.versions[0].id),
    }
"""
    )
    source = out.pop("source")
    assert source == [["a", ["cat"]], ["b", ["dog"]], ["c", ["dog"]], ["note", ["cat"]]]
    for fmt, imported in out.items():
        assert imported["labels"] == ["cat", "dog"], fmt
        assert imported["splits"] == ["train", "valid"], fmt
        # YOLO holds the images' boxes only, not the text item.
        expected = [row for row in source if fmt != "yolo" or row[0] != "note"]
        assert imported["items"] == expected, fmt

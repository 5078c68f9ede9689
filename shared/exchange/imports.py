"""A zip in one of the formats read as entries to import: an item's name,
text, split, annotations and the zip member holding its file. What the
readers find wrong with an entry (an unknown label, a box outside its
image, a path with `..`, a member too large or too compressed to be
honest) refuses that entry, with the reason; the rest go on.

The layouts are those `export` writes (see its docstring), read as
training tools write them too: a plain ImageFolder tree (`{label}/{file}`),
Ultralytics' `images/` and `labels/` without splits, COCO files named
other than `instances_{split}.json`."""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from PIL import Image

from shared.errors import ValidationFailed
from shared.exchange import Format
from shared.exchange.export import CSV_NAME, SEPARATOR, UNLABELLED, UNSPLIT

# A member that inflates more than this, past a mebibyte, is refused as a
# zip bomb: real images and text compress far less.
MAX_RATIO = 100
RATIO_FLOOR = 1024 * 1024
# Slack for boxes written with rounding, in pixels and in YOLO's units.
PIXEL_SLACK = 0.5
UNIT_SLACK = 1e-4
# The files that list the entries (a CSV, spaCy's or COCO's JSON) are read
# whole: no larger than this.
MAX_TABLE_BYTES = 64 * 1024 * 1024


@dataclass
class Entry:
    where: str  # how the report names it: the zip member, or a row of a file
    name: str
    member: zipfile.ZipInfo | None = None
    text: str = ""
    splits: list[str] = field(default_factory=list)
    # (label name, coordinates as the API stores them: "" for the item)
    annotations: list[tuple[str, str]] = field(default_factory=list)
    refused: str = ""
    # The member is a text file whose content is the item's text, with no
    # file: how `folders` holds a text item.
    text_only: bool = False


@dataclass
class Archive:
    """The zip and what an import needs of it before its entries."""

    zip: zipfile.ZipFile
    limit: int
    # Labels the archive declares (YOLO's names, COCO's categories), in
    # their order: made in the version first, so that their order holds.
    declared: list[str] = field(default_factory=list)
    # Members no entry uses and none of the format's files: reported.
    stray: list[Entry] = field(default_factory=list)


def read(fmt: Format, archive: Archive) -> Iterator[Entry]:
    readers = {
        Format.FOLDERS: _folders,
        Format.YOLO: _yolo,
        Format.CSV: _csv,
        Format.SPACY_NER: _spacy,
        Format.COCO: _coco,
    }
    return readers[fmt](archive)


def invalid(detail: str) -> ValidationFailed:
    return ValidationFailed([{"loc": ["body", "file"], "msg": detail}], detail=detail)


def _split_list(name: str) -> list[str]:
    return [] if not name or name == UNSPLIT else [name]


# --- members ----------------------------------------------------------------


def unsafe(info: zipfile.ZipInfo, limit: int) -> str:
    """Why a member must not be read, or ""."""
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
        return "a path outside the archive (absolute, or with '..')"
    if info.flag_bits & 0x1:
        return "encrypted"
    if info.file_size > limit:
        return f"{info.file_size} bytes, over the upload limit of {limit} bytes"
    if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        ratio = info.file_size // max(info.compress_size, 1)
        return f"inflates {ratio}:1, which only a zip bomb does"
    return ""


def _ignored(name: str) -> bool:
    """Folders, and what archivers add (macOS's __MACOSX/ and dot files)."""
    path = PurePosixPath(name)
    return name.endswith("/") or path.parts[0] == "__MACOSX" or path.name.startswith(".")


def _files(archive: Archive) -> Iterator[zipfile.ZipInfo | Entry]:
    """The members worth reading, or an Entry refusing one that is not."""
    for info in archive.zip.infolist():
        reason = unsafe(info, archive.limit)
        if reason:
            yield Entry(where=info.filename, name="", refused=reason)
        elif not _ignored(info.filename):
            yield info


def _read_small(archive: Archive, info: zipfile.ZipInfo) -> bytes:
    reason = unsafe(info, archive.limit)
    if not reason and info.file_size > MAX_TABLE_BYTES:
        reason = f"{info.file_size} bytes, over the limit of {MAX_TABLE_BYTES} for a table"
    if reason:
        raise invalid(f"{info.filename}: {reason}")
    try:
        return archive.zip.read(info)
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise invalid(f"{info.filename}: cannot be read ({error})") from None


def _stem(name: str) -> str:
    return PurePosixPath(name).stem or name


# --- folders ----------------------------------------------------------------


def _folders(archive: Archive) -> Iterator[Entry]:
    # One item per file; the same file (by name and CRC) under several
    # label folders of a split is one item with each of those labels.
    items: dict[tuple[str, str, int, int], Entry] = {}
    for found in _files(archive):
        if isinstance(found, Entry):
            yield found
            continue
        parts = found.filename.split("/")
        if len(parts) > 3:
            yield Entry(found.filename, "", refused="deeper than {split}/{label}/{file}")
            continue
        split, label = "", ""
        if len(parts) == 3:
            split, label = parts[0], parts[1]
        elif len(parts) == 2:
            label = parts[0]
        key = (split, parts[-1], found.CRC, found.file_size)
        entry = items.get(key)
        if entry is None:
            entry = Entry(found.filename, _stem(parts[-1]), found, splits=_split_list(split))
            # A text item is exported as its text in a .txt file.
            entry.text_only = parts[-1].lower().endswith(".txt")
            items[key] = entry
        if label and label != UNLABELLED:
            entry.annotations.append((label, ""))
    yield from items.values()


# --- csv --------------------------------------------------------------------

_FILE_COLUMNS = ("file", "file_name", "filename", "image", "path")
_LABEL_COLUMNS = ("labels", "label", "class")


def _csv(archive: Archive) -> Iterator[Entry]:
    names = archive.zip.namelist()
    tables = [name for name in names if name == CSV_NAME] or [
        name for name in names if name.lower().endswith(".csv") and not _ignored(name)
    ]
    if len(tables) != 1:
        raise invalid(f"the zip must hold {CSV_NAME} (or one .csv file); found {len(tables)}")
    table = tables[0]
    used = {table}
    text = _read_small(archive, archive.zip.getinfo(table)).decode("utf-8-sig", "replace")
    rows = csv.DictReader(io.StringIO(text, newline=""))
    columns = {column.strip().lower(): column for column in rows.fieldnames or []}
    file_column = next((columns[c] for c in _FILE_COLUMNS if c in columns), None)
    label_column = next((columns[c] for c in _LABEL_COLUMNS if c in columns), None)
    if file_column is None and "text" not in columns:
        raise invalid(f"{table} needs a column `file` or `text`")
    folder = str(PurePosixPath(table).parent)
    for line, row in enumerate(rows, start=2):
        where = f"{table}, line {line}"
        path = (row.get(file_column) or "").strip() if file_column else ""
        entry = Entry(
            where=where,
            name=(row.get(columns.get("name", "")) or "").strip() or _stem(path),
            text=row.get(columns.get("text", "")) or "",
            splits=[
                split.strip()
                for split in (row.get(columns.get("split", "")) or "").split(SEPARATOR)
                if split.strip()
            ],
        )
        if label_column:
            labels = (row.get(label_column) or "").split(SEPARATOR)
            entry.annotations = [(label.strip(), "") for label in labels if label.strip()]
        if path:
            member = _member(archive, path, folder)
            if member is None:
                entry.refused = f"the file {path!r} is not in the zip"
            else:
                entry.member = member
                entry.refused = unsafe(member, archive.limit)
                used.add(member.filename)
        elif not entry.text:
            entry.refused = "neither a file nor a text"
        yield entry
    _stray(archive, used)


def _member(archive: Archive, path: str, folder: str) -> zipfile.ZipInfo | None:
    for name in (path, f"{folder}/{path}" if folder != "." else path, f"files/{path}"):
        try:
            return archive.zip.getinfo(name)
        except KeyError:
            continue
    return None


def _stray(archive: Archive, used: set[str]) -> None:
    for found in _files(archive):
        if isinstance(found, Entry):
            if found.where not in used:  # else its entry says why already
                archive.stray.append(found)
        elif found.filename not in used:
            archive.stray.append(Entry(found.filename, "", refused="not listed by the format"))


# --- spacy-ner --------------------------------------------------------------


def _spacy(archive: Archive) -> Iterator[Entry]:
    used: set[str] = set()
    for info in archive.zip.infolist():
        name = info.filename
        if _ignored(name) or not name.lower().endswith((".json", ".jsonl")):
            continue
        used.add(name)
        split = _stem(name)
        data = _read_small(archive, info).decode("utf-8-sig", "replace")
        try:
            if name.lower().endswith(".jsonl"):
                examples = [json.loads(line) for line in data.splitlines() if line.strip()]
            else:
                examples = json.loads(data)
        except ValueError as error:
            raise invalid(f"{name}: not JSON ({error})") from None
        if not isinstance(examples, list):
            raise invalid(f"{name}: not a list of [text, annotations]")
        for index, example in enumerate(examples):
            where = f"{name}, example {index}"
            try:
                yield _spacy_entry(where, split, index, example)
            except (AttributeError, TypeError, ValueError) as error:
                yield Entry(where, "", refused=f"not spaCy's training data: {error}")
    if not used:
        raise invalid("the zip holds no .json or .jsonl of spaCy training data")
    _stray(archive, used)


def _spacy_entry(where: str, split: str, index: int, example: Any) -> Entry:
    splits = _split_list(split)
    entry = Entry(where=where, name=f"{splits[0] if splits else 'item'}-{index + 1}", splits=splits)
    if isinstance(example, dict):  # JSONL: {"text": ..., "entities": [...]}
        text, annotations = example.get("text"), example
    elif isinstance(example, list) and len(example) == 2 and isinstance(example[1], dict):
        text, annotations = example
    else:
        entry.refused = "not [text, {entities}] nor {text, entities}"
        return entry
    if not isinstance(text, str) or not text:
        entry.refused = "no text"
        return entry
    entry.text = text
    entities, cats = annotations.get("entities") or [], annotations.get("cats") or {}
    if not isinstance(entities, list) or not isinstance(cats, dict):
        entry.refused = "`entities` must be a list and `cats` a map"
        return entry
    for span in entities:
        if not (isinstance(span, list | tuple) and len(span) == 3):
            entry.refused = f"an entity that is not [start, end, label]: {span!r}"
            return entry
        start, end, label = span
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
            entry.refused = f"an entity outside the text: {span!r}"
            return entry
        if not isinstance(label, str) or not label:
            entry.refused = f"an entity without a label name: {span!r}"
            return entry
        entry.annotations.append((label, json.dumps({"start": start, "end": end})))
    for label, score in cats.items():
        if score:
            entry.annotations.append((str(label), ""))
    return entry


# --- yolo -------------------------------------------------------------------


def _yolo(archive: Archive) -> Iterator[Entry]:
    import yaml

    try:
        described = archive.zip.getinfo("data.yaml")
    except KeyError:
        # Ultralytics' classification datasets are folders.
        yield from _folders(archive)
        return
    try:
        config = yaml.safe_load(_read_small(archive, described))
    except yaml.YAMLError as error:
        raise invalid(f"data.yaml: not YAML ({error})") from None
    names = config.get("names") if isinstance(config, dict) else None
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not all(isinstance(k, int) for k in names):
        raise invalid("data.yaml needs `names`, a list or a map of class index to name")
    classes = {int(index): str(name) for index, name in names.items()}
    archive.declared = [classes[index] for index in sorted(classes)]
    used = {"data.yaml"}
    for found in _files(archive):
        if isinstance(found, Entry):
            used.add(found.where)  # said here, not again by _stray
            yield found
            continue
        parts = found.filename.split("/")
        if parts[0] != "images" or len(parts) not in (2, 3):
            continue
        used.add(found.filename)
        split = parts[1] if len(parts) == 3 else ""
        entry = Entry(found.filename, _stem(parts[-1]), found, splits=_split_list(split))
        label_path = "/".join(["labels", *parts[1:-1], _stem(parts[-1]) + ".txt"])
        try:
            label_info = archive.zip.getinfo(label_path)
        except KeyError:
            yield entry  # an image without boxes: a background image
            continue
        used.add(label_path)
        entry.refused = unsafe(label_info, archive.limit) or _yolo_boxes(
            archive, entry, _read_small(archive, label_info).decode("utf-8", "replace"), classes
        )
        yield entry
    _stray(archive, used)


def _yolo_boxes(archive: Archive, entry: Entry, lines: str, classes: dict[int, str]) -> str:
    assert entry.member is not None
    size = _image_size(archive, entry.member)
    if size is None:
        return "not an image that can be read"
    width, height = size
    for number, line in enumerate(lines.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            index, (cx, cy, w, h) = int(fields[0]), (float(value) for value in fields[1:])
        except ValueError:
            return f"label line {number}: not `class x_center y_center width height`"
        if not all(math.isfinite(value) for value in (cx, cy, w, h)):
            return f"label line {number}: a box outside the image"
        if index not in classes:
            return f"label line {number}: class {index} is not in data.yaml's names"
        low, high = -UNIT_SLACK, 1 + UNIT_SLACK
        if w <= 0 or h <= 0 or cx - w / 2 < low or cy - h / 2 < low:
            return f"label line {number}: a box outside the image"
        if cx + w / 2 > high or cy + h / 2 > high:
            return f"label line {number}: a box outside the image"
        box = {
            "x": round((cx - w / 2) * width, 3),
            "y": round((cy - h / 2) * height, 3),
            "width": round(w * width, 3),
            "height": round(h * height, 3),
        }
        entry.annotations.append((classes[index], json.dumps(box)))
    return ""


def _image_size(archive: Archive, info: zipfile.ZipInfo) -> tuple[int, int] | None:
    try:
        with archive.zip.open(info) as stream, Image.open(stream) as image:
            return image.size
    except Exception:  # noqa: BLE001 - not an image, or a broken one
        return None


# --- coco -------------------------------------------------------------------


def _coco(archive: Archive) -> Iterator[Entry]:
    tables = [
        info
        for info in archive.zip.infolist()
        if info.filename.lower().endswith(".json") and not _ignored(info.filename)
    ]
    if not tables:
        raise invalid("the zip holds no COCO annotations (.json)")
    used = {info.filename for info in tables}
    documents = []
    for info in tables:
        try:
            document = json.loads(_read_small(archive, info))
        except ValueError as error:
            raise invalid(f"{info.filename}: not JSON ({error})") from None
        if not isinstance(document, dict) or not isinstance(document.get("images"), list):
            raise invalid(f"{info.filename}: not COCO (no `images` list)")
        documents.append((info.filename, document))
        categories = document.get("categories") or []
        if not isinstance(categories, list) or not all(isinstance(c, dict) for c in categories):
            raise invalid(f"{info.filename}: `categories` must be a list of objects")
        for category in categories:
            name = category.get("name")
            if isinstance(name, str) and name and name not in archive.declared:
                archive.declared.append(name)
    for table, document in documents:
        stem = _stem(table)
        split = stem.removeprefix("instances_") if stem.startswith("instances_") else stem
        categories = {
            c.get("id"): c["name"]
            for c in document.get("categories") or []
            if isinstance(c.get("name"), str) and c["name"]
        }
        boxes: dict[Any, list[Any]] = {}
        for annotation in document.get("annotations") or []:
            if isinstance(annotation, dict):
                boxes.setdefault(annotation.get("image_id"), []).append(annotation)
        for number, image in enumerate(document["images"]):
            if not isinstance(image, dict):
                yield Entry(f"{table}, image {number}", "", refused="not an object")
                continue
            entry = _coco_entry(archive, table, split, image, boxes.get(image.get("id"), []))
            if entry.member is not None:
                used.add(entry.member.filename)
            try:
                entry.refused = entry.refused or _coco_boxes(entry, image, categories)
            except (TypeError, ValueError) as error:
                entry.refused = f"an annotation that is not COCO's: {error}"
            yield entry
    _stray(archive, used)


def _coco_entry(
    archive: Archive, table: str, split: str, image: Any, boxes: list[dict[str, Any]]
) -> Entry:
    file_name = str(image.get("file_name") or "")
    entry = Entry(
        f"{table}, image {file_name or image.get('id')}",
        _stem(file_name),
        splits=_split_list(split),
    )
    entry.name = str(image.get("item_name") or entry.name)
    image["_boxes"] = boxes
    folder = f"images/{split}" if split else "images"
    member = _member(archive, file_name, folder) or _member(archive, file_name, "images")
    if member is None:
        entry.refused = f"the file {file_name!r} is not in the zip"
        return entry
    entry.member = member
    entry.refused = unsafe(member, archive.limit)
    return entry


def _coco_boxes(entry: Entry, image: Any, categories: dict[Any, str]) -> str:
    width, height = image.get("width"), image.get("height")
    if not isinstance(width, int | float) or not isinstance(height, int | float):
        return "no width and height"
    for annotation in image["_boxes"]:
        name = categories.get(annotation.get("category_id"))
        if name is None:
            return f"category {annotation.get('category_id')!r} is not in categories"
        bbox = annotation.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4):
            return f"annotation {annotation.get('id')}: a bbox that is not [x, y, width, height]"
        x, y, w, h = (float(value) for value in bbox)
        if not all(math.isfinite(value) for value in (x, y, w, h)):
            return f"annotation {annotation.get('id')}: a box outside the image"
        if w <= 0 or h <= 0 or x < -PIXEL_SLACK or y < -PIXEL_SLACK:
            return f"annotation {annotation.get('id')}: a box outside the image"
        if x + w > width + PIXEL_SLACK or y + h > height + PIXEL_SLACK:
            return f"annotation {annotation.get('id')}: a box outside the image"
        box = {"x": x, "y": y, "width": w, "height": h}
        entry.annotations.append((name, json.dumps(box)))
    return ""

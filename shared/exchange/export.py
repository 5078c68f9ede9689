"""A version's items as a zip in one of the formats, made as it is sent:
the items are read a page at a time and each file is copied from storage
in chunks, so no dataset is ever whole in memory. What a format lists at
its end (the CSV's rows, spaCy's and COCO's JSON) is written to a
temporary file meanwhile, then copied in.

Layouts (README, "Export and import"):
- folders: `{split}/{label}/{file}`, ImageFolder's and Ultralytics'
  classification layout; `unsplit` and `unlabelled` hold the items in no
  split and those without a label; a text item is `{name}.txt`.
- yolo: `images/{split}/{file}`, `labels/{split}/{stem}.txt` (class and
  normalised centre and size per box) and `data.yaml`; a version without
  boxes is a classification dataset, exported as folders.
- csv: `dataset.csv` (name, file, text, split, labels) and `files/`.
- spacy-ner: `{split}.json`, spaCy's training data: [text, {"entities":
  [[start, end, label]], "cats": {label: 1.0}}] per item with text.
- coco: `images/{split}/{file}` and `annotations/instances_{split}.json`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import chain
from typing import IO, Any

from PIL import Image

from shared.exchange import Format
from shared.exchange.records import Record, is_box, is_span, records, region
from shared.exchange.zipstream import ZipStream
from shared.storage import get_storage

CHUNK = 1024 * 1024
BATCH = 256 * 1024
UNSPLIT = "unsplit"
UNLABELLED = "unlabelled"
CSV_NAME = "dataset.csv"
CSV_COLUMNS = ["name", "file", "text", "split", "labels"]
# Kept apart in a CSV cell.
SEPARATOR = "|"
# YOLO's keys for the splits Ultralytics knows by another name.
YOLO_KEYS = {"train": "train", "valid": "val", "val": "val", "validation": "val", "test": "test"}
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:]")
# Of the binary kinds, none is made smaller by deflating worth its time.
_COMPRESSED_FAMILIES = ("image/", "audio/", "application/pdf")


@dataclass
class Plan:
    """What an export needs to know of the version beforehand."""

    version_id: Any
    split_id: Any
    split_name: str
    labels: list[str]
    boxes: bool

    def items(self) -> Iterator[Record]:
        return records(self.version_id, self.split_id, self.split_name)


def export(fmt: Format, plan: Plan) -> Iterator[bytes]:
    """The zip's bytes. Items a format cannot hold are left out: no file and
    no text, a file missing from storage, an item without text in
    spacy-ner or without a readable image in yolo and coco."""
    stream = ZipStream()
    writer = {
        Format.FOLDERS: _folders,
        Format.YOLO: _yolo if plan.boxes else _folders,
        Format.CSV: _csv,
        Format.SPACY_NER: _spacy,
        Format.COCO: _coco,
    }[fmt]
    try:
        yield from _batched(chain(writer(stream, plan), stream.close()))
    except GeneratorExit:
        # The client went away: the zip is dropped, not finished (finishing
        # writes its whole central directory, for no one).
        stream.abort()
        raise


def _batched(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The zip's bytes in pieces of BATCH or more: a streamed answer's
    every piece costs a hop to a thread and a send, which small entries'
    headers would otherwise each pay."""
    buffer = bytearray()
    for chunk in chunks:
        if not buffer and len(chunk) >= BATCH:
            yield chunk
            continue
        buffer += chunk
        if len(buffer) >= BATCH:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


# --- names ------------------------------------------------------------------


def safe_part(text: str, fallback: str) -> str:
    """A name fit for one path segment: no separators, controls or leading
    dots (nothing that leaves its folder)."""
    cleaned = _UNSAFE.sub("_", text).strip().lstrip(".").strip()
    return cleaned[:200] or fallback


class Names:
    """Each file's name in its folder, told apart by the item's id when two
    items have the same. The paths used are kept as 64-bit digests (some 50
    bytes an entry in a set), not as strings."""

    def __init__(self) -> None:
        self._used: set[int] = set()

    @staticmethod
    def _digest(path: str) -> int:
        return int.from_bytes(hashlib.blake2b(path.encode(), digest_size=8).digest(), "big")

    def of(self, folder: str, record: Record, text_file: bool = False) -> str:
        # The item's name (an import names an item by its file's stem).
        name = safe_part(record.name or _stem(record.file_name), str(record.id))
        extension = "txt" if text_file else record.extension
        if extension and not name.lower().endswith("." + extension.lower()):
            name = f"{name}.{extension}"
        if self._digest(f"{folder}/{name}") in self._used:
            stem, dot, suffix = name.rpartition(".")
            name = f"{stem}-{str(record.id)[:8]}{dot}{suffix}" if dot else f"{name}-{record.id}"
        self._used.add(self._digest(f"{folder}/{name}"))
        return name


def _stem(file_name: str) -> str:
    return file_name.rpartition(".")[0] or file_name


def _split_of(record: Record) -> str:
    # An item in several splits is written under the first (in the splits'
    # order): an import makes one item of one path.
    return safe_part(record.splits[0], UNSPLIT) if record.splits else UNSPLIT


# --- files ------------------------------------------------------------------


@dataclass
class _Content:
    chunks: Iterator[bytes]
    size: int
    compress: bool
    head: bytearray = field(default_factory=bytearray)


def _content(record: Record, text_file: bool = False) -> _Content | None:
    """The item's file (or its text, as a text file) to copy in; None when
    it has neither or its file is missing from storage."""
    if text_file or record.file_key is None:
        if not record.text:
            return None
        data = record.text.encode()
        return _Content(iter([data]), len(data), True, bytearray(data[:65536]))
    try:
        stream = get_storage().open(record.file_key)
    except FileNotFoundError:
        return None
    compress = not record.media_type.startswith(_COMPRESSED_FAMILIES)
    content = _Content(iter(()), record.size, compress)

    def chunks() -> Iterator[bytes]:
        with stream:
            while chunk := stream.read(CHUNK):
                if len(content.head) < 65536:
                    content.head += chunk[: 65536 - len(content.head)]
                yield chunk

    content.chunks = chunks()
    return content


def _image_size(content: _Content, record: Record) -> tuple[int, int] | None:
    """An image's width and height from its first bytes, or from the whole
    file when those do not hold them (a JPEG with a long EXIF block)."""
    for attempt in range(2):
        try:
            if attempt == 0:
                with Image.open(io.BytesIO(bytes(content.head))) as image:
                    return image.size
            assert record.file_key is not None
            with get_storage().open(record.file_key) as stream, Image.open(stream) as image:
                return image.size
        except Exception:  # noqa: BLE001 - not an image, or a broken one
            continue
    return None


def _spool() -> IO[bytes]:
    return tempfile.TemporaryFile()  # noqa: SIM115 - closed by the export's ExitStack


def _read_back(spool: IO[bytes], before: bytes = b"", after: bytes = b"") -> Iterator[bytes]:
    spool.seek(0)
    if before:
        yield before
    while chunk := spool.read(CHUNK):
        yield chunk
    if after:
        yield after


# --- the formats ------------------------------------------------------------


def _folders(stream: ZipStream, plan: Plan) -> Iterator[bytes]:
    names = Names()
    for record in plan.items():
        labels = list(dict.fromkeys(safe_part(label, "_") for label, _ in record.annotations))
        text_file = record.file_key is None
        split = _split_of(record)
        # One name in all its label folders (unique in the split), by which
        # an import makes them one item again.
        name = names.of(split, record, text_file)
        for label in labels or [UNLABELLED]:
            content = _content(record, text_file)
            if content is None:
                break
            path = f"{split}/{label}/{name}"
            yield from stream.add(path, content.chunks, content.compress, content.size)


def _csv(stream: ZipStream, plan: Plan) -> Iterator[bytes]:
    names = Names()
    with ExitStack() as stack:
        spool = stack.enter_context(_spool())
        text = io.TextIOWrapper(spool, encoding="utf-8", newline="", write_through=True)
        stack.callback(text.detach)
        rows = csv.writer(text)
        rows.writerow(CSV_COLUMNS)
        for record in plan.items():
            file_path = ""
            if record.file_key is not None:
                content = _content(record)
                if content is None:
                    continue
                file_path = f"files/{names.of('files', record)}"
                yield from stream.add(file_path, content.chunks, content.compress, content.size)
            elif not record.text:
                continue
            labels = dict.fromkeys(label for label, _ in record.annotations)
            rows.writerow(
                [
                    record.name,
                    file_path,
                    record.text,
                    SEPARATOR.join(record.splits),
                    SEPARATOR.join(labels),
                ]
            )
        text.flush()
        yield from stream.add(CSV_NAME, _read_back(spool), compress=True)


def _spacy(stream: ZipStream, plan: Plan) -> Iterator[bytes]:
    with ExitStack() as stack:
        spools: dict[str, IO[bytes]] = {}
        for record in plan.items():
            if not record.text:
                continue
            entities, cats = [], {}
            for label, coordinates in record.annotations:
                found = region(coordinates)
                if is_span(found):
                    assert found is not None
                    entities.append([int(found["start"]), int(found["end"]), label])
                elif found is None:
                    cats[label] = 1.0
            annotations: dict[str, Any] = {"entities": sorted(entities)}
            if cats:
                annotations["cats"] = cats
            split = _split_of(record)
            if split not in spools:
                spools[split] = stack.enter_context(_spool())
            _append(spools[split], [record.text, annotations])
        for split, spool in spools.items():
            yield from stream.add(f"{split}.json", _read_back(spool, b"[\n", b"\n]\n"), True)


OnImage = Callable[[str, str, Record, tuple[int, int]], list[tuple[str, bytes]]]


def _box_items(stream: ZipStream, plan: Plan, on_image: OnImage) -> Iterator[bytes]:
    """The image items' files under images/{split}/, each then handed with
    its size to `on_image`, and the entries it answers written after it;
    the rest left out."""
    names = Names()
    for record in plan.items():
        content = None
        if record.file_key is not None and record.media_type.startswith("image/"):
            content = _content(record)
        if content is None:
            continue
        split = _split_of(record)
        folder = f"images/{split}"
        name = names.of(folder, record)
        yield from stream.add(f"{folder}/{name}", content.chunks, content.compress, content.size)
        size = _image_size(content, record)
        if size is None:
            continue
        for path, body in on_image(split, name, record, size):
            yield from stream.add(path, [body], compress=True, size=len(body))


def _yolo(stream: ZipStream, plan: Plan) -> Iterator[bytes]:
    import yaml

    classes = {name: index for index, name in enumerate(plan.labels)}
    splits: dict[str, None] = {}

    def on_image(
        split: str, name: str, record: Record, size: tuple[int, int]
    ) -> list[tuple[str, bytes]]:
        splits[split] = None
        width, height = size
        lines = []
        for label, coordinates in record.annotations:
            box = region(coordinates)
            if not is_box(box) or label not in classes:
                continue
            assert box is not None
            x, y, w, h = (float(box[key]) for key in ("x", "y", "width", "height"))
            lines.append(
                f"{classes[label]} {(x + w / 2) / width:.8f} {(y + h / 2) / height:.8f} "
                f"{w / width:.8f} {h / height:.8f}"
            )
        if not lines:
            return []
        stem = name.rpartition(".")[0] or name
        return [(f"labels/{split}/{stem}.txt", ("\n".join(lines) + "\n").encode())]

    yield from _box_items(stream, plan, on_image)
    folders: dict[str, list[str]] = {}
    for split in splits:
        key = YOLO_KEYS.get(split.lower(), split)
        # A split named as one of the file's own keys keeps its name apart.
        key = f"{key}_split" if key in ("path", "names") else key
        folders.setdefault(key, []).append(f"images/{split}")
    described: dict[str, Any] = {"path": "."}
    # Ultralytics reads a list of folders where a key has several (a
    # `valid` and a `val` split).
    described.update((key, dirs[0] if len(dirs) == 1 else dirs) for key, dirs in folders.items())
    described["names"] = dict(enumerate(plan.labels))
    body = yaml.safe_dump(described, sort_keys=False, allow_unicode=True).encode()
    yield from stream.add("data.yaml", [body], compress=True, size=len(body))


def _coco(stream: ZipStream, plan: Plan) -> Iterator[bytes]:
    categories = [{"id": n + 1, "name": name} for n, name in enumerate(plan.labels)]
    ids = {name: n + 1 for n, name in enumerate(plan.labels)}
    with ExitStack() as stack:
        # Per split: its images' and its annotations' JSON objects.
        spools: dict[str, tuple[IO[bytes], IO[bytes]]] = {}
        counter = {"image": 0, "annotation": 0}

        def on_image(
            split: str, name: str, record: Record, size: tuple[int, int]
        ) -> list[tuple[str, bytes]]:
            if split not in spools:
                spools[split] = (stack.enter_context(_spool()), stack.enter_context(_spool()))
            images, annotations = spools[split]
            counter["image"] += 1
            image = {"id": counter["image"], "file_name": name, "width": size[0]}
            image.update(height=size[1], item_name=record.name)
            _append(images, image)
            for label, coordinates in record.annotations:
                box = region(coordinates)
                if not is_box(box) or label not in ids:
                    continue
                assert box is not None
                bbox = [float(box[key]) for key in ("x", "y", "width", "height")]
                counter["annotation"] += 1
                _append(
                    annotations,
                    {
                        "id": counter["annotation"],
                        "image_id": counter["image"],
                        "category_id": ids[label],
                        "bbox": bbox,
                        "area": bbox[2] * bbox[3],
                        "iscrowd": 0,
                    },
                )
            return []

        yield from _box_items(stream, plan, on_image)
        tail = json.dumps(categories).encode()
        for split, (images, annotations) in spools.items():

            def parts(
                images: IO[bytes] = images, annotations: IO[bytes] = annotations
            ) -> Iterator[bytes]:
                yield from _read_back(images, b'{"images": [', b'],\n"annotations": [')
                yield from _read_back(annotations, after=b'],\n"categories": ' + tail + b"}\n")

            yield from stream.add(f"annotations/instances_{split}.json", parts(), compress=True)


def _append(spool: IO[bytes], value: Any) -> None:
    """A value of a JSON list written to a spool, after a comma but the first."""
    if spool.tell():
        spool.write(b",\n")
    spool.write(json.dumps(value, ensure_ascii=False).encode())

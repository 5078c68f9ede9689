"""A version's items in the formats training tools read, both ways:
`export` streams one out as a zip, `imports` reads one in. `records` is
what both speak: an item with its file, splits and annotations by name."""

from __future__ import annotations

import enum


class Format(enum.StrEnum):
    FOLDERS = "folders"
    YOLO = "yolo"
    CSV = "csv"
    SPACY_NER = "spacy-ner"
    COCO = "coco"


def default_format(content_type: str) -> Format:
    """The format a download without `format` gets: what the dataset's
    kind of content is most often trained from."""
    if content_type == "ner":
        return Format.SPACY_NER
    if content_type == "images":
        return Format.FOLDERS
    return Format.CSV

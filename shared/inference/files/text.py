"""The text a text model works on: the item's text, or, when the item has
none and its file is plain text, the file's text."""

from __future__ import annotations

import codecs
from pathlib import Path

from shared.inference.base import ItemInput

MAX_FILE_BYTES = 10 * 1024 * 1024


def item_text(item: ItemInput, file: Path | None) -> tuple[str, str]:
    """The text and where it came from: "text" or "file"."""
    if not item.text and file is not None and item.media_type.startswith("text/"):
        return read_text_file(file), "file"
    return item.text, "text"


def read_text_file(file: Path) -> str:
    """At most MAX_FILE_BYTES of the file, decoded as UTF-8 with invalid
    bytes replaced."""
    with file.open("rb") as stream:
        data = stream.read(MAX_FILE_BYTES)
    # Not final: a character cut in two by the size cap is left out rather
    # than turned into a replacement character.
    return codecs.getincrementaldecoder("utf-8")(errors="replace").decode(data, final=False)

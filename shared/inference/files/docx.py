"""The text of a Word .docx file: the paragraphs of its main document part,
table cells included, read with the standard library (a .docx is a zip of
XML parts).

Headers, footers, footnotes and comments live in other parts and are left
out; deleted text of tracked changes and field codes are left out too.
"""

from __future__ import annotations

import posixpath
import zipfile
import zlib
from pathlib import Path
from typing import IO
from xml.etree import ElementTree

from shared.inference.base import PermanentError

# A zip entry can inflate a thousandfold: refuse a document part larger than
# this before and while reading it, so a zip bomb cannot exhaust memory.
MAX_PART_BYTES = 64 * 1024 * 1024

_OFFICE_DOCUMENT = "/officeDocument"  # the end of the relationship type URI
_RELATIONSHIPS = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"
# Transitional (what Word writes) and Strict OOXML name the same elements.
_WORD = (
    "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}",
    "{http://purl.oclc.org/ooxml/wordprocessingml/main}",
)
# Word stores a drawing twice, as the modern choice and a legacy fallback;
# reading both would repeat the text of every text box.
_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_CHARACTERS = {"tab": "\t", "br": "\n", "cr": "\n", "noBreakHyphen": "-"}


def read_docx(file: Path) -> list[str]:
    """The text of each paragraph, in document order, except that a
    paragraph nested in another (in a text box) comes before it."""
    try:
        with zipfile.ZipFile(file) as archive:
            part = _main_part(archive)
            with archive.open(part) as stream:
                return _paragraphs(_Capped(stream, part))
    except zipfile.BadZipFile as error:
        raise PermanentError(f"The .docx file is not a valid zip archive: {error}") from error
    except ElementTree.ParseError as error:
        raise PermanentError(f"The .docx file holds malformed XML: {error}") from error
    # zipfile raises these for encrypted entries, unknown compression methods
    # and damaged compressed data.
    except (RuntimeError, NotImplementedError, OSError, EOFError, zlib.error) as error:
        raise PermanentError(f"The .docx file cannot be read: {error}") from error


def _main_part(archive: zipfile.ZipFile) -> str:
    """The name of the main document part, as the package's relationships
    say (usually word/document.xml, but the name is not fixed)."""
    part = "word/document.xml"
    if "_rels/.rels" in archive.namelist():
        with archive.open("_rels/.rels") as stream:
            root = ElementTree.parse(_Capped(stream, "_rels/.rels")).getroot()
        for relationship in root.iter(_RELATIONSHIPS):
            if relationship.get("Type", "").endswith(_OFFICE_DOCUMENT):
                part = posixpath.normpath(relationship.get("Target", part).lstrip("/"))
                break
    try:
        info = archive.getinfo(part)
    except KeyError:
        raise PermanentError(f"The .docx file has no document part ({part}).") from None
    if info.file_size > MAX_PART_BYTES:
        raise _too_large(part)
    return part


def _paragraphs(stream: _Capped) -> list[str]:
    paragraphs: list[str] = []
    # Paragraphs nest (a text box inside a paragraph holds its own), so the
    # open ones form a stack; a paragraph is complete at its end tag.
    open_paragraphs: list[list[str]] = []
    fallback_depth = 0
    for event, element in ElementTree.iterparse(stream, events=("start", "end")):
        if element.tag == _FALLBACK:
            fallback_depth += 1 if event == "start" else -1
            continue
        namespace, _, name = element.tag.rpartition("}")
        if fallback_depth or namespace + "}" not in _WORD:
            continue
        if name == "p":
            if event == "start":
                open_paragraphs.append([])
            else:
                paragraphs.append("".join(open_paragraphs.pop()))
        elif event == "end" and open_paragraphs:
            if name == "t":
                open_paragraphs[-1].append(element.text or "")
            elif name in _CHARACTERS:
                open_paragraphs[-1].append(_CHARACTERS[name])
        if event == "end" and name == "p":
            element.clear()  # its text is taken; free what it held
    return paragraphs


class _Capped:
    """A read-only stream that fails once more than MAX_PART_BYTES came out
    of it: a zip entry's declared size is not to be trusted."""

    def __init__(self, stream: IO[bytes], part: str) -> None:
        self._stream = stream
        self._part = part
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        limit = MAX_PART_BYTES + 1 - self._read
        data = self._stream.read(limit if size < 0 else min(size, limit))
        self._read += len(data)
        if self._read > MAX_PART_BYTES:
            raise _too_large(self._part)
        return data


def _too_large(part: str) -> PermanentError:
    return PermanentError(
        f"The .docx file's {part} is larger than {MAX_PART_BYTES // (1024 * 1024)} MiB "
        "uncompressed; it is not read."
    )

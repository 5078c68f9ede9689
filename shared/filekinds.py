"""Tell the kind of an uploaded file from its first bytes, not its name."""

from __future__ import annotations

from dataclasses import dataclass

import filetype

from shared.errors import UnsupportedMediaType


@dataclass(frozen=True)
class FileKind:
    extension: str
    media_type: str
    family: str  # image, pdf, document, audio, text


# Extension and media type of each accepted kind, by family.
_FAMILIES: dict[str, dict[str, str]] = {
    "image": {
        "jpg": "image/jpeg", "png": "image/png", "gif": "image/gif",
        "webp": "image/webp", "bmp": "image/bmp", "tif": "image/tiff",
    },
    "pdf": {"pdf": "application/pdf"},
    "document": {
        "doc": "application/msword",
        "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    },
    "audio": {
        "wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac",
        "ogg": "audio/ogg", "m4a": "audio/mp4",
    },
    "text": {"txt": "text/plain"},
}  # fmt: skip
_ACCEPTED: dict[str, FileKind] = {
    extension: FileKind(extension, media_type, family)
    for family, kinds in _FAMILIES.items()
    for extension, media_type in kinds.items()
}


def detect(head: bytes) -> FileKind:
    """The accepted kind of a file starting with `head`, else 415."""
    if not head:
        raise UnsupportedMediaType("The file is empty.")
    guess = filetype.guess(head)
    if guess is not None:
        extension = "png" if guess.extension == "apng" else guess.extension
        if extension in _ACCEPTED and extension != "txt":
            return _ACCEPTED[extension]
        raise UnsupportedMediaType(f"Files of type {guess.mime} are not accepted.")
    if _looks_like_text(head):
        return _ACCEPTED["txt"]
    raise UnsupportedMediaType("The file's kind is not recognised or not accepted.")


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        # The head may be cut in the middle of a multi-byte character.
        return error.reason == "unexpected end of data"
    return True

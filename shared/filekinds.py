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


_ACCEPTED: dict[str, FileKind] = {
    kind.extension: kind
    for kind in [
        FileKind("jpg", "image/jpeg", "image"),
        FileKind("png", "image/png", "image"),
        FileKind("gif", "image/gif", "image"),
        FileKind("webp", "image/webp", "image"),
        FileKind("bmp", "image/bmp", "image"),
        FileKind("tif", "image/tiff", "image"),
        FileKind("pdf", "application/pdf", "pdf"),
        FileKind("doc", "application/msword", "document"),
        FileKind(
            "docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "document",
        ),
        FileKind("wav", "audio/wav", "audio"),
        FileKind("mp3", "audio/mpeg", "audio"),
        FileKind("flac", "audio/flac", "audio"),
        FileKind("ogg", "audio/ogg", "audio"),
        FileKind("m4a", "audio/mp4", "audio"),
        FileKind("txt", "text/plain", "text"),
    ]
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

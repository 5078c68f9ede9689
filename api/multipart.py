"""Stream the `file` part of a multipart/form-data body, chunk by chunk.

Starlette's own form parser spools every file to a temporary file before the
endpoint sees it, with no size limit; here the bytes go straight on to
storage as they arrive, so the size limit is enforced while reading and a
too-large upload never lands anywhere whole.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from shared.errors import BadRequest, UnsupportedMediaType, ValidationFailed

FILE_FIELD = "file"
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


@dataclass
class _State:
    header_field: bytes = b""
    header_value: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)
    in_file_part: bool = False
    file_parts: int = 0
    file_name: str = ""
    chunks: list[bytes] = field(default_factory=list)


class FilePart:
    """Iterate over `chunks()` to receive the file's bytes; afterwards
    `file_name` holds the client's name for it, made safe."""

    def __init__(self, content_type: str, stream: AsyncIterator[bytes]) -> None:
        media_type, params = parse_options_header(content_type)
        if media_type != b"multipart/form-data":
            raise UnsupportedMediaType(
                "Send the file as multipart/form-data, in a part named 'file'."
            )
        boundary = params.get(b"boundary")
        if not boundary:
            raise BadRequest("The multipart body has no boundary.")
        self._stream = stream
        self._state = _State()
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_part_data": self._on_part_data,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
            },
        )

    @property
    def file_name(self) -> str:
        return self._state.file_name

    async def chunks(self) -> AsyncIterator[bytes]:
        state = self._state
        try:
            async for chunk in self._stream:
                self._parser.write(chunk)
                for piece in state.chunks:
                    yield piece
                state.chunks.clear()
            self._parser.finalize()
        except (ValueError, TypeError) as error:  # python-multipart's parse errors
            raise BadRequest(f"The multipart body is malformed: {error}") from error
        if self._parser.state != MultipartState.END:
            # The body stopped before its closing boundary: a cut-off upload.
            raise BadRequest("The multipart body ends before its closing boundary.")
        if state.file_parts == 0:
            raise ValidationFailed(
                [{"loc": ["body", FILE_FIELD], "msg": "a part named 'file' is required"}]
            )

    def _on_part_begin(self) -> None:
        self._state.headers = {}
        self._state.in_file_part = False

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._state.header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._state.header_value += data[start:end]

    def _on_header_end(self) -> None:
        state = self._state
        state.headers[state.header_field.lower()] = state.header_value
        state.header_field = b""
        state.header_value = b""

    def _on_headers_finished(self) -> None:
        state = self._state
        _, params = parse_options_header(state.headers.get(b"content-disposition", b""))
        if params.get(b"name", b"").decode("latin-1") != FILE_FIELD:
            return  # other fields are ignored
        state.file_parts += 1
        if state.file_parts > 1:
            raise ValidationFailed(
                [{"loc": ["body", FILE_FIELD], "msg": "send exactly one part named 'file'"}]
            )
        state.in_file_part = True
        state.file_name = safe_file_name(params.get(b"filename", b"").decode("utf-8", "replace"))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._state.in_file_part:
            self._state.chunks.append(data[start:end])


def safe_file_name(name: str) -> str:
    """The last path segment of a client's file name, without control
    characters, at most 255 characters. Used for Content-Disposition only;
    storage keys never come from clients."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_NAME.sub("", name).strip().lstrip(".")
    return name[:255]

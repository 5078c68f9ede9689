"""A zip written as a stream: the standard library's ZipFile over a sink
that cannot seek, so each entry is followed by a data descriptor instead of
a header rewritten in place, and the bytes are handed on as they are made.
What stays in memory is the central directory (a few hundred bytes an
entry), which the zip's end must list."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterable, Iterator


class _Sink(io.RawIOBase):
    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._offset = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._chunks.append(bytes(data))
        self._offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self._offset

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


class ZipStream:
    def __init__(self) -> None:
        self._sink = _Sink()
        self._zip = zipfile.ZipFile(self._sink, "w", allowZip64=True)  # noqa: SIM115
        self._when = time.localtime()[:6]

    def add(
        self, name: str, chunks: Iterable[bytes], compress: bool, size: int | None = None
    ) -> Iterator[bytes]:
        """Write an entry from `chunks`, yielding the zip's bytes as they
        come; `size`, when known, spares a Zip64 header to small files."""
        info = zipfile.ZipInfo(name, date_time=self._when)
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        if size is not None:
            info.file_size = size
        with self._zip.open(info, "w", force_zip64=size is None) as out:
            for chunk in chunks:
                out.write(chunk)
                if data := self._sink.drain():
                    yield data
        if data := self._sink.drain():
            yield data

    def close(self) -> Iterator[bytes]:
        self._zip.close()
        if data := self._sink.drain():
            yield data

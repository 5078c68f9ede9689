"""A zip written as a stream: the standard library's ZipFile over a sink
that cannot seek, so each entry is followed by a data descriptor instead of
a header rewritten in place, and the bytes are handed on as they are made.

The zip's end lists every entry (its central directory). ZipFile keeps a
ZipInfo of each in memory for it, some 700 bytes an entry, 70 MB for a
version of 100,000 files; here they are pickled to a temporary file as
each entry is done and read back one at a time when the end is written."""

from __future__ import annotations

import io
import pickle
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from typing import IO

# What the sink holds in memory before it spills to disk: more than a file's
# chunk, less than the central directory of 100,000 entries (7 MB), which
# the zip's end writes at once.
SPILL = 4 * 1024 * 1024
CHUNK = 1024 * 1024


class _Sink(io.RawIOBase):
    def __init__(self) -> None:
        self._buffer = tempfile.SpooledTemporaryFile(max_size=SPILL)  # noqa: SIM115
        self._offset = 0
        # Dropped: what an entry left open writes as it is collected is lost.
        self.dropped = False

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if not self.dropped:
            self._buffer.write(data)
        self._offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self._offset

    def drain(self) -> Iterator[bytes]:
        """What was written since the last drain, a chunk at a time."""
        if not self._buffer.tell():
            return
        self._buffer.seek(0)
        while chunk := self._buffer.read(CHUNK):
            yield chunk
        self._buffer.seek(0)
        self._buffer.truncate()

    def close(self) -> None:
        self._buffer.close()
        super().close()


class _SpooledInfos:
    """ZipFile's `filelist`, on disk: what it appends and, at its end,
    iterates over and counts."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._count = 0

    def append(self, info: zipfile.ZipInfo) -> None:
        if self._file.closed:
            return  # the zip was dropped
        pickle.dump(info, self._file, protocol=pickle.HIGHEST_PROTOCOL)
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[zipfile.ZipInfo]:
        self._file.seek(0)
        for _ in range(self._count):
            yield pickle.load(self._file)  # noqa: S301 - our own file

    def close(self) -> None:
        self._file.close()


class ZipStream:
    def __init__(self) -> None:
        self._sink = _Sink()
        self._zip = zipfile.ZipFile(self._sink, "w", allowZip64=True)  # noqa: SIM115
        self._infos = _SpooledInfos()
        self._open: IO[bytes] | None = None
        self._zip.filelist = self._infos  # type: ignore[assignment]
        # Every entry dated 1980-01-01, the zip format's first day: the same
        # items give the same bytes, whenever exported.
        self._when = (1980, 1, 1, 0, 0, 0)

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
            self._open = out
            for chunk in chunks:
                out.write(chunk)
                yield from self._sink.drain()
        # Its name is kept only to warn of a second entry of that name,
        # which the formats' writers never make.
        self._open = None
        self._zip.NameToInfo.clear()
        yield from self._sink.drain()

    def abort(self) -> None:
        """Drop the zip unfinished: ZipFile writes its end when closed (or
        collected) unless it has no file any more."""
        self._sink.dropped = True
        self._infos.close()
        if self._open is not None:
            # Its end written to nowhere; closed again when its generator is
            # collected, it does nothing.
            self._open.close()
        self._zip.fp = None
        self._sink.close()

    def close(self) -> Iterator[bytes]:
        try:
            self._zip.close()
            yield from self._sink.drain()
        finally:
            self._infos.close()
            self._sink.close()

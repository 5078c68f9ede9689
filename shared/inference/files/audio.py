"""Uploaded audio as the speech models want it: 16 kHz mono 16-bit PCM.

libsndfile (inside the `soundfile` wheel) decodes wav, flac, ogg (Vorbis and
Opus) and mp3. It has no AAC, so m4a is decoded by FFmpeg through PyAV (the
`av` wheel carries FFmpeg's libraries): only m4a, so that the formats
libsndfile reads keep its checks and messages. Either way the file is read
and resampled in blocks (soxr's streaming resampler carries its filter state
across blocks, so there is no click at block edges), so a long 48 kHz stereo
recording never sits in memory at its original rate.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shared.inference.base import ItemInput, PermanentError

SAMPLE_RATE = 16_000
# Two hours is far past any clip a transcript is wanted for, and at
# pocketsphinx's speed (about 0.2x real time on one core) already a
# 25-minute job; longer files are refused before a sample is decoded.
MAX_DURATION_SECONDS = 2 * 60 * 60
# Seconds of audio decoded and resampled at a time.
BLOCK_SECONDS = 30
# Media types decoded by FFmpeg rather than libsndfile.
M4A = "audio/mp4"
# An m4a whose samples end this far before the length its header declares
# was cut short (AAC's encoder delay and padding are far less than this).
M4A_SHORTFALL_SECONDS = 0.5


def load_speech(item: ItemInput, file: Path | None) -> Any:
    """The item's audio as a 1-D int16 numpy array at SAMPLE_RATE, or a
    PermanentError saying why it cannot be had."""
    if file is None:
        raise PermanentError("The item has no audio file.")
    # The kind detected from the bytes at upload, not the client-editable
    # extension.
    if not item.media_type.startswith("audio/"):
        raise PermanentError(f"Speech models read audio; this file is {item.media_type!r}.")
    if item.media_type == M4A:
        return resample_to_pcm16(_m4a_blocks(file))
    if item.media_type == "audio/wav":
        check_wav_complete(file)
    return decode_to_pcm16(file)


def check_wav_complete(file: Path) -> None:
    """Refuse a WAV file cut short. libsndfile reads one as far as it goes
    and reports the length present, so a transcript of half an upload would
    look like a whole one; the data chunk's header says what should be
    there. Sizes 0 and 0xFFFFFFFF are what recorders writing a stream put
    before they know the length: those are taken as they are."""
    size = file.stat().st_size
    with open(file, "rb") as wav:
        head = wav.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # RF64 and the like: left to libsndfile
        offset = 12
        while offset + 8 <= size:
            wav.seek(offset)
            kind, length = struct.unpack("<4sI", wav.read(8))
            if kind == b"data":
                present = size - offset - 8
                if length not in (0, 0xFFFFFFFF) and length > present:
                    raise PermanentError(
                        f"The audio file is cut short: its header declares {length} bytes "
                        f"of sound and it holds {present}."
                    )
                return
            offset += 8 + length + (length & 1)  # chunks are padded to even sizes


def decode_to_pcm16(file: Path) -> Any:
    """Decode with libsndfile, downmix to mono and resample to SAMPLE_RATE
    int16 samples."""
    return resample_to_pcm16(_sndfile_blocks(file))


def resample_to_pcm16(blocks: Iterator[tuple[int, Any]]) -> Any:
    """Join (sample rate, mono float32 block) pairs into int16 samples at
    SAMPLE_RATE, counting the length as it goes: a header's length is only
    a claim (mp3 headers estimate it)."""
    import numpy
    import soxr

    out: list[Any] = []
    stream = None
    rate = 0
    frames_read = 0
    for block_rate, block in blocks:
        if stream is None:
            rate = block_rate
            stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        elif block_rate != rate:
            raise PermanentError(
                f"The audio file changes its sample rate midway ({rate} to {block_rate} Hz)."
            )
        frames_read += len(block)
        if frames_read > MAX_DURATION_SECONDS * rate:
            raise _too_long(frames_read / rate)
        out.append(stream.resample_chunk(block, last=False))
    if stream is not None:
        out.append(stream.resample_chunk(numpy.zeros(0, dtype="float32"), last=True))
    samples = numpy.concatenate(out) if out else numpy.zeros(0, dtype="float32")
    if samples.size == 0:
        raise PermanentError("The audio file holds no samples.")
    return (numpy.clip(samples, -1.0, 1.0) * 32767).astype(numpy.int16)


def _sndfile_blocks(file: Path) -> Iterator[tuple[int, Any]]:
    import soundfile

    try:
        with soundfile.SoundFile(file) as sound:
            rate = sound.samplerate
            if sound.frames > MAX_DURATION_SECONDS * rate:
                raise _too_long(sound.frames / rate)
            for block in sound.blocks(
                blocksize=BLOCK_SECONDS * rate, dtype="float32", always_2d=True
            ):
                yield rate, block.mean(axis=1)
    except soundfile.SoundFileError as error:
        # libsndfile's own words, without the path of our storage.
        reason = getattr(error, "error_string", "") or "unknown format"
        raise PermanentError(f"The audio file cannot be decoded: {reason}") from error


def _m4a_blocks(file: Path) -> Iterator[tuple[int, Any]]:
    """The first audio stream of an MP4 container (AAC, or ALAC and the like
    where FFmpeg has the codec), downmixed by the channels' mean as for the
    other formats, in blocks of about BLOCK_SECONDS at its own rate; soxr
    alone resamples."""
    import av
    import numpy

    try:
        # The container named, not guessed by FFmpeg from an untrusted
        # file, and no protocol but reading this file.
        with av.open(
            str(file),
            mode="r",
            format="mp4",
            options={"protocol_whitelist": "file"},
            metadata_errors="ignore",
        ) as container:
            if not container.streams.audio:
                raise PermanentError("The m4a file holds no audio stream.")
            stream = container.streams.audio[0]
            declared = _declared_seconds(container, stream)
            if declared is not None and declared > MAX_DURATION_SECONDS:
                raise _too_long(declared)
            # Float planar whatever the decoder gives, at its own rate and
            # channel layout: one row per channel.
            planar = av.AudioResampler(format="fltp")
            pending: list[Any] = []
            pending_frames = 0
            decoded = 0
            rate = 0
            for frame in container.decode(stream):
                for converted in planar.resample(frame):
                    block = converted.to_ndarray().mean(axis=0, dtype="float32")
                    if rate and converted.sample_rate != rate and pending:
                        yield rate, numpy.concatenate(pending)
                        pending, pending_frames = [], 0
                    rate = converted.sample_rate
                    pending.append(block)
                    pending_frames += len(block)
                    decoded += len(block)
                    if pending_frames >= BLOCK_SECONDS * rate:
                        yield rate, numpy.concatenate(pending)
                        pending, pending_frames = [], 0
            if pending:
                yield rate, numpy.concatenate(pending)
    except av.FFmpegError as error:
        # FFmpeg's own words, without the path of our storage.
        reason = error.strerror or "unknown error"
        raise PermanentError(f"The audio file cannot be decoded: {reason}") from error
    except ValueError as error:
        # PyAV's conversions refuse frames that change format or layout midway.
        raise PermanentError(f"The audio file cannot be decoded: {error}") from error
    if declared is not None and rate and decoded / rate < declared - M4A_SHORTFALL_SECONDS:
        raise PermanentError(
            f"The audio file is cut short: its header declares {declared:.1f} s "
            f"of sound and it holds {decoded / rate:.1f} s."
        )


def _declared_seconds(container: Any, stream: Any) -> float | None:
    """The length the file's header claims for the stream, if it has one."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE units
    return None


def _too_long(seconds: float) -> PermanentError:
    return PermanentError(
        f"The audio is too long to process: {seconds / 60:.0f} minutes "
        f"(at most {MAX_DURATION_SECONDS // 60})."
    )

"""Uploaded audio as the speech models want it: 16 kHz mono 16-bit PCM.

libsndfile (inside the `soundfile` wheel) decodes wav, flac, ogg (Vorbis and
Opus) and mp3; it has no AAC, so m4a is refused with a message that says so
rather than failing somewhere deeper. The file is read and resampled in
blocks (soxr's streaming resampler carries its filter state across blocks, so
there is no click at block edges), so a long 48 kHz stereo recording never
sits in memory at its original rate.
"""

from __future__ import annotations

import struct
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

UNSUPPORTED_MEDIA_TYPES = {
    "audio/mp4": "m4a (AAC) audio is not supported; convert it to wav, flac, ogg or mp3.",
}


def load_speech(item: ItemInput, file: Path | None) -> Any:
    """The item's audio as a 1-D int16 numpy array at SAMPLE_RATE, or a
    PermanentError saying why it cannot be had."""
    if file is None:
        raise PermanentError("The item has no audio file.")
    # The kind detected from the bytes at upload, not the client-editable
    # extension.
    if not item.media_type.startswith("audio/"):
        raise PermanentError(f"Speech models read audio; this file is {item.media_type!r}.")
    if item.media_type in UNSUPPORTED_MEDIA_TYPES:
        raise PermanentError(UNSUPPORTED_MEDIA_TYPES[item.media_type])
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
    """Decode, downmix to mono and resample to SAMPLE_RATE int16 samples."""
    import numpy
    import soundfile
    import soxr

    blocks: list[Any] = []
    try:
        with soundfile.SoundFile(file) as sound:
            rate = sound.samplerate
            # mp3 headers only estimate the length, so it is checked again
            # while reading.
            if sound.frames > MAX_DURATION_SECONDS * rate:
                raise _too_long(sound.frames / rate)
            stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
            frames_read = 0
            for block in sound.blocks(
                blocksize=BLOCK_SECONDS * rate, dtype="float32", always_2d=True
            ):
                frames_read += len(block)
                if frames_read > MAX_DURATION_SECONDS * rate:
                    raise _too_long(frames_read / rate)
                blocks.append(stream.resample_chunk(block.mean(axis=1), last=False))
            blocks.append(stream.resample_chunk(numpy.zeros(0, dtype="float32"), last=True))
    except soundfile.SoundFileError as error:
        # libsndfile's own words, without the path of our storage.
        reason = getattr(error, "error_string", "") or "unknown format"
        raise PermanentError(f"The audio file cannot be decoded: {reason}") from error
    samples = numpy.concatenate(blocks) if blocks else numpy.zeros(0, dtype="float32")
    if samples.size == 0:
        raise PermanentError("The audio file holds no samples.")
    return (numpy.clip(samples, -1.0, 1.0) * 32767).astype(numpy.int16)


def _too_long(seconds: float) -> PermanentError:
    return PermanentError(
        f"The audio is too long to process: {seconds / 60:.0f} minutes "
        f"(at most {MAX_DURATION_SECONDS // 60})."
    )

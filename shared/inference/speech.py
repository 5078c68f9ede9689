"""Speech to text with pocketsphinx, whose wheel carries a US English
acoustic model, language model and dictionary: nothing is downloaded.

A file is decoded in chunks of at most about half a minute, cut only in the
middle of a pause that the voice activity detector found. Cutting at pauses
keeps words whole; decoding a chunk rather than each detected speech region
keeps the few hundred milliseconds of a word's onset that the detector calls
silence (decoding region by region lost the first "it" of two phrases in
every ten seconds of the test clip). Chunks bound the decoder's memory on
long files.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.inference.base import (
    ItemInput,
    ModelOutput,
    PostProcessorConfig,
    PostProcessorModel,
)
from shared.inference.files.audio import SAMPLE_RATE, load_speech

MAX_CHUNK_SECONDS = 30
# pocketsphinx's own markers, not words: sentence start and end, silence,
# and noise or filler tokens in brackets ([NOISE], ++BREATH++ in some models).
NON_WORDS = {"<s>", "</s>", "<sil>"}
ALTERNATE_PRONUNCIATION = re.compile(r"\(\d+\)$")


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds from the start of the file
    end: float


class Transcriber:
    """One pocketsphinx decoder with the bundled en-us model. A decoder is not
    safe to share between threads, so calls are serialised."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        # No hmm/lm/dict arguments: the models inside the wheel.
        self.decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        self.frames_per_second = int(self.decoder.config["frate"])
        self.lock = threading.Lock()

    def words(self, samples: Any) -> list[Word]:
        """The words spoken in 16 kHz int16 samples, with their times."""
        words: list[Word] = []
        with self.lock:
            for start, end in chunks(samples):
                words.extend(self._decode(samples[start:end], start / SAMPLE_RATE))
        return words

    def _decode(self, samples: Any, offset: float) -> list[Word]:
        self.decoder.start_utt()
        try:
            self.decoder.process_raw(samples.tobytes(), full_utt=True)
        finally:
            # Always: a run stopped mid-utterance (a soft time limit) would
            # leave the decoder unable to start the next job's utterance.
            self.decoder.end_utt()
        words = []
        for segment in self.decoder.seg():
            word = ALTERNATE_PRONUNCIATION.sub("", segment.word)
            if word in NON_WORDS or word.startswith(("[", "+")):
                continue
            words.append(
                Word(
                    word=word,
                    start=round(offset + segment.start_frame / self.frames_per_second, 2),
                    # The end frame is the word's last frame, inclusive.
                    end=round(offset + (segment.end_frame + 1) / self.frames_per_second, 2),
                )
            )
        return words


def speech_regions(samples: Any) -> list[tuple[int, int]]:
    """(start, end) sample indices of the stretches that pocketsphinx's voice
    activity detector calls speech."""
    from pocketsphinx import Endpointer

    endpointer = Endpointer(sample_rate=SAMPLE_RATE)
    frame_samples = endpointer.frame_bytes // 2
    regions: list[tuple[int, int]] = []
    start: float | None = None
    # Whole frames only: the endpointer refuses a short one except through
    # end_stream, and the last few milliseconds decide nothing.
    for offset in range(0, len(samples) - frame_samples + 1, frame_samples):
        endpointer.process(samples[offset : offset + frame_samples].tobytes())
        if endpointer.in_speech and start is None:
            start = endpointer.speech_start
        elif not endpointer.in_speech and start is not None:
            regions.append(_to_samples(start, endpointer.speech_end, len(samples)))
            start = None
    if start is not None:
        # Still speaking when the file ends.
        regions.append(_to_samples(start, len(samples) / SAMPLE_RATE, len(samples)))
    return regions


def chunks(samples: Any) -> list[tuple[int, int]]:
    """Consecutive (start, end) sample ranges that cover the whole file, each
    at most MAX_CHUNK_SECONDS long unless no pause allowed a cut."""
    limit = MAX_CHUNK_SECONDS * SAMPLE_RATE
    regions = speech_regions(samples)
    pauses = [(left[1] + right[0]) // 2 for left, right in zip(regions, regions[1:], strict=False)]
    cuts = [0]
    previous_pause = None
    for pause in [*pauses, len(samples)]:
        while pause - cuts[-1] > limit:
            if previous_pause is not None and previous_pause > cuts[-1]:
                cuts.append(previous_pause)
            else:
                # Speech (or noise) with no pause for a whole chunk: cut anyway.
                cuts.append(cuts[-1] + limit)
        previous_pause = pause
    cuts.append(len(samples))
    return [(start, end) for start, end in zip(cuts, cuts[1:], strict=False) if end > start]


def _to_samples(start: float, end: float, length: int) -> tuple[int, int]:
    return max(0, int(start * SAMPLE_RATE)), min(length, int(end * SAMPLE_RATE))


class PocketSphinx(PostProcessorModel):
    model_type = "stt"
    name = "pocketsphinx-en-us"

    def __init__(self) -> None:
        self.transcriber = Transcriber()

    def run(self, item: ItemInput, file: Path | None, config: PostProcessorConfig) -> ModelOutput:
        samples = load_speech(item, file)
        words = self.transcriber.words(samples)
        return ModelOutput(
            raw={
                "model": self.name,
                "words": [
                    {"word": word.word, "start": word.start, "end": word.end} for word in words
                ],
                "duration": round(len(samples) / SAMPLE_RATE, 2),
            },
            text=" ".join(word.word for word in words),
        )

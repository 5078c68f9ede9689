import re
import uuid
from collections import Counter
from pathlib import Path

import pytest

from shared.inference.base import PermanentError, PostProcessorConfig
from shared.inference.diarization import SpeakerDiarization
from tests.shared.factories import item_input

DATA = Path(__file__).parents[2] / "data"
# Two espeak-ng voices taking turns, 0.6 s apart (tests/data/README.md).
TWO_VOICES = DATA / "two_voices.wav"
TURNS = [("male", 0.6, 3.36), ("female", 3.96, 6.4), ("male", 7.0, 9.16), ("female", 9.76, 11.74)]
ONE_VOICE = DATA / "two_cities_16k.wav"
# Measured: all four turns found and given to the right voice.
MIN_SEGMENT_ACCURACY = 1.0
CONFIG = PostProcessorConfig(id=uuid.uuid4(), name="speakers", model_type="stt-diarization")


def segment_accuracy(segments, turns):
    """The fraction of segments whose speaker is right, each cluster standing
    for the true speaker of most of its segments."""
    truths = [true_speaker(segment, turns) for segment in segments]
    by_cluster: dict[str, Counter[str]] = {}
    for segment, truth in zip(segments, truths, strict=True):
        by_cluster.setdefault(segment["speaker"], Counter())[truth] += 1
    majority = {cluster: counts.most_common(1)[0][0] for cluster, counts in by_cluster.items()}
    right = sum(majority[s["speaker"]] == t for s, t in zip(segments, truths, strict=True))
    return right / len(segments)


def true_speaker(segment, turns):
    overlap: Counter[str] = Counter()
    for speaker, start, end in turns:
        overlap[speaker] += max(0.0, min(segment["end"], end) - max(segment["start"], start))
    return overlap.most_common(1)[0][0]


@pytest.fixture(scope="module")
def model():
    return SpeakerDiarization()


@pytest.fixture(scope="module")
def output(model):
    return model.run(audio_item(), TWO_VOICES, CONFIG)


def audio_item(media_type="audio/wav"):
    return item_input(name="dialogue", extension="wav", media_type=media_type)


def test_tells_two_voices_apart(output):
    segments = output.raw["segments"]
    assert output.raw["model"] == "pocketsphinx-mfcc-bic"
    assert output.raw["speakers"] == 2
    assert len(segments) == len(TURNS)
    assert segment_accuracy(segments, TURNS) >= MIN_SEGMENT_ACCURACY
    assert [segment["speaker"] for segment in segments][:2] == ["SPEAKER_1", "SPEAKER_2"]


def test_segments_follow_the_turns_in_time(output):
    segments = output.raw["segments"]
    assert all(set(segment) == {"speaker", "start", "end", "text"} for segment in segments)
    assert all(0 <= s["start"] < s["end"] <= 12.35 for s in segments)
    assert all(a["end"] <= b["start"] for a, b in zip(segments, segments[1:], strict=False))
    for segment, (_, start, end) in zip(segments, TURNS, strict=True):
        assert segment["start"] == pytest.approx(start, abs=0.3)
        assert segment["end"] == pytest.approx(end, abs=0.3)


def test_text_is_one_line_per_turn(output):
    lines = output.text.splitlines()
    segments = [segment for segment in output.raw["segments"] if segment["text"]]
    assert lines == [f"{segment['speaker']}: {segment['text']}" for segment in segments]
    assert all(re.fullmatch(r"SPEAKER_[12]: [a-z' ]+", line) for line in lines)


def test_one_reader_is_one_speaker(model):
    output = model.run(audio_item(), ONE_VOICE, CONFIG)

    assert output.raw["speakers"] == 1
    [segment] = output.raw["segments"]
    assert segment["speaker"] == "SPEAKER_1"
    assert segment["text"].startswith("it was the best of times")
    assert output.text == f"SPEAKER_1: {segment['text']}"


def test_refuses_a_file_that_is_not_audio(model, tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(PermanentError, match="image/png"):
        model.run(audio_item("image/png"), path, CONFIG)


def test_refuses_corrupt_audio(model, tmp_path):
    path = tmp_path / "broken.ogg"
    path.write_bytes(b"OggS" + bytes(range(256)) * 40)
    with pytest.raises(PermanentError, match="cannot be decoded"):
        model.run(audio_item("audio/ogg"), path, CONFIG)

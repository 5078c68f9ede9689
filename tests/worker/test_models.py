"""The built-in models through the whole pipeline: upload over HTTP, a real
worker, results where the post-processor's output_target says."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import skimage
import soundfile
from PIL import Image

from tests.builders import (
    item_path,
    m4a,
    make_dataset,
    make_item,
    make_post_processor,
    ok,
    png_with_words,
    upload,
    version_path,
    wait_for_jobs,
)

pytestmark = pytest.mark.usefixtures("worker")
SAMPLES = Path(skimage.__file__).parent / "data"
DATA = Path(__file__).resolve().parents[1] / "data"


def dataset_for(client, post_processor, **fields):
    """A new dataset (with `fields`) and a post-processor on it (with those in `post_processor`)."""
    dataset = make_dataset(client, **fields)
    make_post_processor(client, dataset, **post_processor)
    return dataset


def run(client, dataset, content, name):
    item = make_item(client, dataset)
    ok(upload(client, dataset, item, content, name))
    [job] = wait_for_jobs(client, dataset, item)
    assert job["status"] == "completed", job
    return job, ok(client.get(item_path(dataset, item)))


def test_faces_become_box_annotations(client):
    dataset = dataset_for(
        client,
        {
            "name": "faces",
            "model_type": "detection",
            "output_target": "annotations",
            "auto_create_labels": True,
        },
        default_splits=True,
    )

    job, item = run(client, dataset, (SAMPLES / "astronaut.png").read_bytes(), "astronaut.png")

    [annotation] = item["annotations"]
    assert json.loads(annotation["coordinates"]) == {"x": 177, "y": 66, "width": 95, "height": 95}
    [label] = ok(client.get(version_path(dataset) + "/labels"))
    assert (label["name"], annotation["label_id"]) == ("face", label["id"])
    assert len(json.loads(job["result"])["boxes"]) == 1


def test_entities_become_span_annotations_on_the_items_text(client):
    dataset = dataset_for(
        client,
        {
            "name": "entities",
            "model_type": "ner",
            "output_target": "both",
            "auto_create_labels": True,
        },
        content_type="ner",
    )
    text = b"Mail ana@example.com before 27 November 2026 about the $1,250.00 invoice.\n"

    _job, item = run(client, dataset, text, "note.txt")

    labels = {
        label["id"]: label["name"] for label in ok(client.get(version_path(dataset) + "/labels"))
    }
    spans = {
        labels[a["label_id"]]: item["text"][slice(*json.loads(a["coordinates"]).values())]
        for a in item["annotations"]
    }
    assert spans == {"EMAIL": "ana@example.com", "DATE": "27 November 2026", "MONEY": "$1,250.00"}


def test_a_scanned_pdf_is_read_by_ocr(client):
    dataset = dataset_for(client, {"name": "pages"}, content_type="documents")
    page = Image.open(io.BytesIO(png_with_words("SCANNED 2026")))
    pdf = io.BytesIO()
    page.save(pdf, "PDF", resolution=150)

    job, item = run(client, dataset, pdf.getvalue(), "scan.pdf")

    assert item["text"] == "SCANNED 2026"
    assert json.loads(job["result"])["pages"][0]["source"] == "ocr"


def test_a_text_is_classified_against_the_versions_labels(client):
    dataset = make_dataset(client, content_type="text")
    for name in ("sports", "cooking", "finance"):
        ok(client.post(version_path(dataset) + "/labels", json={"name": name}), 201)
    make_post_processor(
        client,
        dataset,
        name="topic",
        model_type="classification",
        output_target="annotations",
        confidence_threshold=0.5,
    )
    text = b"Simmer the onions in butter until golden, then add the stock.\n"

    job, item = run(client, dataset, text, "recipe.txt")

    labels = {
        label["id"]: label["name"] for label in ok(client.get(version_path(dataset) + "/labels"))
    }
    assert [labels[a["label_id"]] for a in item["annotations"]] == ["cooking"]
    assert json.loads(job["result"])["label"] == "cooking"


DATA = Path(__file__).resolve().parent.parent / "data"


def test_speech_is_transcribed_with_word_times(client):
    dataset = dataset_for(client, {"name": "transcript", "model_type": "stt"})

    job, item = run(client, dataset, (DATA / "two_cities_16k.wav").read_bytes(), "reading.wav")

    assert item["text"].startswith("it was the best of times it was the worst of times")
    words = json.loads(job["result"])["words"]
    assert words[0]["word"] == "it" and words[0]["start"] < words[-1]["end"]


def test_two_voices_get_two_speakers(client):
    dataset = dataset_for(client, {"name": "who said what", "model_type": "stt-diarization"})

    job, item = run(client, dataset, (DATA / "two_voices.wav").read_bytes(), "dialogue.wav")

    result = json.loads(job["result"])
    assert result["speakers"] == 2
    assert [segment["speaker"] for segment in result["segments"]] == [
        "SPEAKER_1",
        "SPEAKER_2",
        "SPEAKER_1",
        "SPEAKER_2",
    ]
    assert item["text"].startswith("SPEAKER_1: ")


def test_a_doc_upload_is_read_into_the_item_text(client):
    dataset = dataset_for(client, {"name": "text"}, content_type="documents")

    job, item = run(client, dataset, (DATA / "quarterly_report.doc").read_bytes(), "report.doc")

    assert item["text"].startswith("Quarterly report\nRevenue grew 12% as planned.\n")
    assert "Café, naïve, € 5, Ελληνικά, 日本語" in item["text"]
    assert json.loads(job["result"])["paragraphs"] == 7


def test_an_m4a_upload_is_transcribed(client, tmp_path):
    samples, rate = soundfile.read(DATA / "two_cities_16k.wav", dtype="float32")
    reading = m4a(tmp_path / "reading.m4a", samples, rate)
    dataset = dataset_for(client, {"name": "transcript", "model_type": "stt"})

    job, item = run(client, dataset, reading.read_bytes(), "reading.m4a")

    assert item["text"].startswith("it was the best of times it was the worst of times")
    assert json.loads(job["result"])["duration"] == pytest.approx(12.9, abs=0.1)

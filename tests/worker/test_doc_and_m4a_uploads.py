"""Word 97-2003 .doc and m4a (AAC) uploads through the whole pipeline: the
upload over HTTP detects their kind, a real worker runs the built-in model."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy
import pytest
import soundfile

from tests.builders import (
    item_path,
    make_dataset,
    make_item,
    make_post_processor,
    ok,
    upload,
    wait_for_jobs,
)

pytestmark = pytest.mark.usefixtures("worker")
DATA = Path(__file__).resolve().parent.parent / "data"


def run(client, post_processor, content, name, **fields):
    dataset = make_dataset(client, **fields)
    make_post_processor(client, dataset, **post_processor)
    item = make_item(client, dataset)
    ok(upload(client, dataset, item, content, name))
    [job] = wait_for_jobs(client, dataset, item)
    assert job["status"] == "completed", job
    return job, ok(client.get(item_path(dataset, item)))


def test_a_doc_upload_is_read_into_the_item_text(client):
    content = (DATA / "quarterly_report.doc").read_bytes()

    job, item = run(client, {"name": "text"}, content, "report.doc", content_type="documents")

    assert item["text"].startswith("Quarterly report\nRevenue grew 12% as planned.\n")
    assert "Café, naïve, € 5, Ελληνικά, 日本語" in item["text"]
    assert json.loads(job["result"])["paragraphs"] == 7


def test_an_m4a_upload_is_transcribed(client, tmp_path):
    samples, rate = soundfile.read(DATA / "two_cities_16k.wav", dtype="float32")
    path = tmp_path / "reading.m4a"
    with av.open(str(path), "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            numpy.ascontiguousarray(samples[numpy.newaxis]), format="fltp", layout="mono"
        )
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)

    job, item = run(
        client, {"name": "transcript", "model_type": "stt"}, path.read_bytes(), "reading.m4a"
    )

    assert item["text"].startswith("it was the best of times it was the worst of times")
    assert json.loads(job["result"])["duration"] == pytest.approx(12.9, abs=0.1)

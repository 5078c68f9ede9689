"""Jobs run by a real Celery worker process, from upload to result."""

from __future__ import annotations

import json

import pytest

from tests.builders import (
    item_path,
    make_dataset,
    make_item,
    make_post_processor,
    ok,
    png_with_words,
    scrape_metrics,
    upload,
    version_path,
    wait_for_jobs,
)
from tests.fixtures import itemflow

pytestmark = pytest.mark.usefixtures("worker")


def flaky(client, dataset, post_processor=None, **options):
    """A post-processor on the flaky test model; `options` go in its prompt."""
    fields = {"name": "flaky", **(post_processor or {})}
    return make_post_processor(
        client,
        dataset,
        model_type="classification",
        model_id="test-flaky",
        prompt=json.dumps(options),
        **fields,
    )


def uploaded_item(client, dataset, content=b"some text to process\n", name="a.txt"):
    item = make_item(client, dataset)
    ok(upload(client, dataset, item, content, name))
    return item


def test_ocr_job_writes_words_into_item_text(client):
    dataset = make_dataset(client)
    make_post_processor(client, dataset)
    item = uploaded_item(client, dataset, png_with_words("INVOICE 4711 PAID"), "scan.png")

    [job] = wait_for_jobs(client, dataset, item)

    assert job["status"] == "completed", job
    assert job["attempts"] == 1
    assert job["error"] is None
    assert job["started_at"] and job["completed_at"]
    lines = json.loads(job["result"])["lines"]
    assert lines[0]["text"] == "INVOICE 4711 PAID"
    assert len(lines[0]["box"]) == 4 and 0 < lines[0]["score"] <= 1
    got = ok(client.get(item_path(dataset, item)))
    assert got["text"] == "INVOICE 4711 PAID"
    assert got["job_status"] == {
        "pending": 0,
        "processing": 0,
        "completed": 1,
        "failed": 0,
        "total": 1,
    }
    assert got["version"] == 3  # created 1, upload 2, OCR text 3


def test_corrupt_image_fails_at_once_with_a_clear_error(client):
    dataset = make_dataset(client)
    make_post_processor(client, dataset)
    png = png_with_words("CUT SHORT")
    item = uploaded_item(client, dataset, png[: len(png) // 3], "broken.png")

    [job] = wait_for_jobs(client, dataset, item)

    assert job["status"] == "failed"
    assert job["attempts"] == 1
    assert "image cannot be read" in job["error"]
    assert job["completed_at"] is not None


def test_transient_failures_are_retried_with_back_off(client):
    dataset = make_dataset(client)
    flaky(client, dataset, fail_times=2, text="third time lucky")
    item = uploaded_item(client, dataset)

    [job] = wait_for_jobs(client, dataset, item)

    assert job["status"] == "completed", job
    assert job["attempts"] == 3
    assert json.loads(job["result"]) == {"runs": 3, "labels": {}}
    assert ok(client.get(item_path(dataset, item)))["text"] == "third time lucky"


def test_transient_failures_stop_at_max_attempts(client):
    dataset = make_dataset(client)
    flaky(client, dataset, fail_times=10)
    item = uploaded_item(client, dataset)

    [job] = wait_for_jobs(client, dataset, item)

    assert job["status"] == "failed"
    assert job["attempts"] == job["max_attempts"] == 3
    assert job["error"] == "flaky failure number 3"


def test_retry_follows_the_contract(client):
    dataset = make_dataset(client)
    make_post_processor(
        client, dataset, name="rejects", model_type="classification", model_id="test-reject"
    )
    item = uploaded_item(client, dataset)
    [job] = wait_for_jobs(client, dataset, item)
    assert (job["status"], job["attempts"]) == ("failed", 1)
    retry = item_path(dataset, item) + f"/jobs/{job['id']}/retry"

    retried = ok(client.post(retry))
    assert retried["status"] == "pending"
    assert retried["error"] is None
    assert retried["attempts"] == 1  # never reset
    [job] = wait_for_jobs(client, dataset, item)
    assert (job["status"], job["attempts"]) == ("failed", 2)

    ok(client.post(retry))
    [job] = wait_for_jobs(client, dataset, item)
    assert (job["status"], job["attempts"]) == ("failed", 3)

    exhausted = client.post(retry)
    assert exhausted.status_code == 409
    assert exhausted.headers["content-type"] == "application/problem+json"
    assert "max_attempts" in exhausted.json()["detail"]
    assert client.post(retry, json={"max_attempts": 3}).status_code == 409

    raised = ok(client.post(retry, json={"max_attempts": 5}))
    assert (raised["status"], raised["max_attempts"]) == ("pending", 5)
    [job] = wait_for_jobs(client, dataset, item)
    assert (job["status"], job["attempts"], job["max_attempts"]) == ("failed", 4, 5)


def test_only_failed_jobs_can_be_retried(client):
    dataset = make_dataset(client)
    flaky(client, dataset)
    item = uploaded_item(client, dataset)
    [job] = wait_for_jobs(client, dataset, item)
    assert job["status"] == "completed"

    answer = client.post(item_path(dataset, item) + f"/jobs/{job['id']}/retry")

    assert answer.status_code == 409
    assert "completed" in answer.json()["detail"]


def test_a_model_id_without_a_model_fails_naming_it(client):
    dataset = make_dataset(client)
    make_post_processor(client, dataset, name="other ocr", model_type="ocr", model_id="tesseract")
    item = uploaded_item(client, dataset)

    [job] = wait_for_jobs(client, dataset, item)

    assert (job["status"], job["attempts"]) == ("failed", 1)
    assert "No model is installed for model_type 'ocr' with model_id 'tesseract'" in job["error"]
    assert "Installed: " in job["error"]


def test_jobs_run_for_enabled_post_processors_in_order(client):
    dataset = make_dataset(client)
    flaky(client, dataset, text="second", post_processor={"name": "b", "order": 2})
    flaky(client, dataset, text="first", post_processor={"name": "a", "order": 1})
    flaky(client, dataset, text="never", post_processor={"name": "off", "enabled": False})
    item = uploaded_item(client, dataset)

    jobs = wait_for_jobs(client, dataset, item)

    assert [job["post_processor_name"] for job in jobs] == ["a", "b"]
    assert all(job["status"] == "completed" for job in jobs)
    listed = ok(client.get(f"/datasets/{dataset['id']}/post-processors/jobs?status=completed"))
    assert {job["id"] for job in listed} == {job["id"] for job in jobs}


def test_annotations_target_maps_predictions_to_labels(client):
    dataset = make_dataset(client, default_splits=True)
    version = dataset["versions"][0]
    ok(client.post(version_path(dataset) + "/labels", json={"name": "Cat"}), 201)
    flaky(
        client,
        dataset,
        labels={"cat": 0.9, "dog": 0.8, "bird": 0.1},
        post_processor={
            "output_target": "both",
            "confidence_threshold": 0.5,
            "auto_create_labels": True,
        },
        text="a cat",
    )
    item = uploaded_item(client, dataset)
    [job] = wait_for_jobs(client, dataset, item)
    assert job["status"] == "completed", job

    got = ok(client.get(item_path(dataset, item)))
    labels = ok(client.get(version_path(dataset) + "/labels"))
    names = {label["id"]: label["name"] for label in labels}
    assert got["text"] == "a cat"
    assert sorted(names[a["label_id"]] for a in got["annotations"]) == ["Cat", "dog"]
    assert sorted(names.values()) == ["Cat", "dog"]  # "bird" fell under the threshold
    assert all(a["split_id"] == version["default_split"] for a in got["annotations"])
    assert all(a["coordinates"] == "" for a in got["annotations"])


def test_annotations_target_without_auto_create_uses_existing_labels_only(client):
    dataset = make_dataset(client)
    flaky(
        client,
        dataset,
        labels={"cat": 0.9, "dog": 0.8},
        post_processor={"output_target": "annotations"},
    )
    ok(client.post(version_path(dataset) + "/labels", json={"name": "dog"}), 201)
    item = uploaded_item(client, dataset)
    wait_for_jobs(client, dataset, item)

    got = ok(client.get(item_path(dataset, item)))

    assert len(got["annotations"]) == 1
    assert got["text"] == ""  # annotations only: the text is left alone


def slow(client, dataset, **options):
    return make_post_processor(
        client,
        dataset,
        name="slow",
        model_type="ner",
        model_id="test-slow",
        prompt=json.dumps(options),
    )


def test_a_soft_time_limit_ends_the_attempt_as_a_transient_failure(client):
    dataset = make_dataset(client)
    slow(client, dataset, sleep=10)
    item = uploaded_item(client, dataset)

    [job] = wait_for_jobs(client, dataset, item)

    assert (job["status"], job["attempts"]) == ("completed", 2)
    assert ok(client.get(item_path(dataset, item)))["text"] == "woke up"


def test_a_hard_time_limit_ends_the_attempt_as_a_transient_failure(client):
    dataset = make_dataset(client)
    slow(client, dataset, sleep=10, ignore_soft_limit=True)
    item = uploaded_item(client, dataset)

    [job] = wait_for_jobs(client, dataset, item, timeout=90)

    # The first run was killed at 4 s; the worker counted it and retried.
    assert (job["status"], job["attempts"]) == ("completed", 2), job


def test_failed_jobs_retried_in_bulk_from_the_cli_run_once_more_and_no_other(client, api_url):
    dataset = make_dataset(client)
    make_post_processor(
        client, dataset, name="rejects", model_type="classification", model_id="test-reject"
    )
    flaky(client, dataset, post_processor={"name": "fine"})
    items = [uploaded_item(client, dataset) for _ in range(3)]
    for item in items:
        jobs = wait_for_jobs(client, dataset, item)
        assert sorted((job["status"], job["attempts"]) for job in jobs) == [
            ("completed", 1),
            ("failed", 1),
        ]
    operator = [
        "--url", api_url, "--api-key", client.headers["Authorization"].removeprefix("Bearer "),
        "--dataset", dataset["id"],
    ]  # fmt: skip

    retried = itemflow("jobs", "retry", *operator)

    assert retried == "retried 3, skipped 0\n"
    for item in items:
        jobs = {job["post_processor_name"]: job for job in wait_for_jobs(client, dataset, item)}
        assert (jobs["rejects"]["status"], jobs["rejects"]["attempts"]) == ("failed", 2)
        # The completed job never ran again: the flaky model counts its runs.
        assert (jobs["fine"]["attempts"], json.loads(jobs["fine"]["result"])["runs"]) == (1, 1)
    summary = itemflow("jobs", "summary", *operator).splitlines()
    rows = {line.split()[0]: line.split()[2:] for line in summary[1:3]}
    # pending, processing, completed, failed, total
    assert rows == {"rejects": ["0", "0", "0", "3", "3"], "fine": ["0", "0", "3", "0", "3"]}
    assert summary[-1].split(None, 2) == ["3", "rejects", "the test model rejects every input"]


def test_the_workers_runs_are_in_the_apis_metrics(client, api_url):
    def runs():
        return {
            (name, labels.get("outcome", ""), labels.get("le", "")): value
            for name, series in scrape_metrics(api_url).items()
            for labels, value in series
            if labels.get("model_type") == "classification"
        }

    before = runs()
    dataset = make_dataset(client)
    make_post_processor(
        client, dataset, name="rejects", model_type="classification", model_id="test-reject"
    )
    flaky(client, dataset, post_processor={"name": "fine"})
    item = uploaded_item(client, dataset)
    wait_for_jobs(client, dataset, item)

    after = runs()

    def more(name, outcome, le=""):
        return after.get((name, outcome, le), 0) - before.get((name, outcome, le), 0)

    # Counted in the worker's pool processes, summed by the API's /metrics.
    assert more("itemflow_job_runs_total", "completed") >= 1
    assert more("itemflow_job_runs_total", "failed") >= 1
    assert more("itemflow_job_duration_seconds_count", "completed") >= 1
    assert more("itemflow_job_duration_seconds_bucket", "completed", "+Inf") >= 1
    assert more("itemflow_job_duration_seconds_bucket", "failed", "900.0") >= 1

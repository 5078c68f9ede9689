"""The jobs an upload creates for a dataset's post-processors, and retrying
one. No worker runs during these tests, and none is needed: every assertion
holds whatever state the jobs are in."""

import uuid

import pytest

from tests.builders import (
    error_locs,
    find_nulls,
    item_path,
    make_dataset,
    make_item,
    make_quick_post_processor,
    ok,
    problem,
    upload,
)

JOB_FIELDS = {
    "id",
    "created_at",
    "updated_at",
    "post_processor_id",
    "dataset_item_id",
    "dataset_id",
    "status",
    "attempts",
    "max_attempts",
    "error",
    "result",
    "started_at",
    "completed_at",
    "user_id",
    "post_processor_name",
    "item_name",
}
JOB_NULLABLE = frozenset({"error", "result", "started_at", "completed_at"})
STATUSES = ("pending", "processing", "completed", "failed")


def jobs_path(dataset):
    return f"/datasets/{dataset['id']}/post-processors/jobs"


def item_jobs(client, dataset, item):
    return ok(client.get(item_path(dataset, item) + "/jobs"))


def uploaded_with_one_job(client):
    """A dataset with a quick post-processor, an item uploaded to it, and its job."""
    dataset = make_dataset(client)
    make_quick_post_processor(client, dataset)
    item = make_item(client, dataset)
    ok(upload(client, dataset, item, b"text"))
    [job] = item_jobs(client, dataset, item)
    return dataset, item, job


def test_an_upload_makes_one_job_per_enabled_post_processor_in_order(client):
    dataset = make_dataset(client)
    second = make_quick_post_processor(client, dataset, name="second", order=2)
    make_quick_post_processor(client, dataset, name="disabled", order=0, enabled=False)
    first = make_quick_post_processor(client, dataset, name="first", order=1)
    item = make_item(client, dataset, name="scanned")

    ok(upload(client, dataset, item, b"some text"))

    jobs = item_jobs(client, dataset, item)
    assert [job["post_processor_name"] for job in jobs] == ["first", "second"]
    assert [job["post_processor_id"] for job in jobs] == [first["id"], second["id"]]
    for job in jobs:
        assert set(job) == JOB_FIELDS
        assert job["item_name"] == "scanned"
        assert job["dataset_item_id"] == item["id"]
        assert job["dataset_id"] == dataset["id"]
        assert job["user_id"] == dataset["user_id"]
        assert job["status"] in STATUSES
        assert job["max_attempts"] == 3
        assert find_nulls(job, JOB_NULLABLE) == []
    counts = ok(client.get(item_path(dataset, item)))["job_status"]
    assert counts["total"] == 2
    assert sum(counts[status] for status in STATUSES) == 2


def test_no_post_processors_no_jobs(client):
    dataset = make_dataset(client)
    make_quick_post_processor(client, dataset, enabled=False)
    item = make_item(client, dataset)

    ok(upload(client, dataset, item, b"text"))

    assert item_jobs(client, dataset, item) == []
    assert ok(client.get(item_path(dataset, item)))["job_status"]["total"] == 0


def test_each_upload_makes_new_jobs_and_voids_those_still_pending(client):
    dataset = make_dataset(client)
    make_quick_post_processor(client, dataset)
    item = make_item(client, dataset)

    ok(upload(client, dataset, item, b"one"))
    first = {job["id"]: job for job in item_jobs(client, dataset, item)}
    ok(upload(client, dataset, item, b"two"))
    jobs = item_jobs(client, dataset, item)

    new = [job for job in jobs if job["id"] not in first]
    kept = [job for job in jobs if job["id"] in first]
    assert len(first) == 1 and len(new) == 1
    # The first job is gone if it was still waiting when the new file came;
    # a worker may have taken it already, and then it stays.
    assert all(job["status"] != "pending" for job in kept), kept


def test_item_jobs_of_an_unknown_item_is_404(client):
    dataset = make_dataset(client)

    problem(client.get(item_path(dataset, {"id": uuid.uuid4()}) + "/jobs"), 404)


def test_dataset_jobs_list_and_filters(client):
    dataset = make_dataset(client)
    reader = make_quick_post_processor(client, dataset, name="reader", order=1)
    tagger = make_quick_post_processor(client, dataset, name="tagger", order=2)
    first, second = make_item(client, dataset, name="a"), make_item(client, dataset, name="b")
    for item in (first, second):
        ok(upload(client, dataset, item, b"text"))

    everything = client.get(jobs_path(dataset))
    assert everything.headers["X-Total-Count"] == "4"
    assert len(ok(everything)) == 4

    by_post_processor = client.get(jobs_path(dataset), params={"post_processor_id": tagger["id"]})
    assert by_post_processor.headers["X-Total-Count"] == "2"
    assert {job["post_processor_name"] for job in ok(by_post_processor)} == {"tagger"}

    by_item = client.get(jobs_path(dataset), params={"item_id": second["id"]})
    assert [job["item_name"] for job in ok(by_item)] == ["b", "b"]
    assert [job["post_processor_id"] for job in ok(by_item)] == [reader["id"], tagger["id"]]

    both = ok(
        client.get(
            jobs_path(dataset), params={"item_id": first["id"], "post_processor_id": reader["id"]}
        )
    )
    assert [(job["item_name"], job["post_processor_name"]) for job in both] == [("a", "reader")]


def test_dataset_jobs_filter_by_status(client):
    dataset = make_dataset(client)
    make_quick_post_processor(client, dataset)
    for name in ("a", "b"):
        ok(upload(client, dataset, make_item(client, dataset, name=name), b"text"))

    for status in STATUSES:
        response = client.get(jobs_path(dataset), params={"status": status})
        listed = ok(response)
        assert response.headers["X-Total-Count"] == str(len(listed))
        assert {job["status"] for job in listed} <= {status}
    # The quick test model never fails, so this filter must leave all out.
    assert ok(client.get(jobs_path(dataset), params={"status": "failed"})) == []


def test_dataset_jobs_pages(client):
    dataset = make_dataset(client)
    make_quick_post_processor(client, dataset)
    for name in ("a", "b", "c"):
        ok(upload(client, dataset, make_item(client, dataset, name=name), b"text"))

    response = client.get(jobs_path(dataset), params={"page_size": 2, "page_count": 1})

    assert [job["item_name"] for job in ok(response)] == ["c"]
    assert response.headers["X-Total-Count"] == "3"


@pytest.mark.parametrize(
    ("name", "value"),
    [("status", "done"), ("post_processor_id", "reader"), ("item_id", "1"), ("page_size", "0")],
)
def test_dataset_jobs_bad_filters_are_422(client, name, value):
    dataset = make_dataset(client)

    body = problem(client.get(jobs_path(dataset), params={name: value}), 422)

    assert error_locs(body) == [["query", name]]


def test_deleting_a_post_processor_deletes_its_jobs(client):
    dataset = make_dataset(client)
    kept = make_quick_post_processor(client, dataset, name="kept")
    dropped = make_quick_post_processor(client, dataset, name="dropped")
    item = make_item(client, dataset)
    ok(upload(client, dataset, item, b"text"))

    ok(client.delete(f"/datasets/{dataset['id']}/post-processors/{dropped['id']}"))

    jobs = item_jobs(client, dataset, item)
    assert [job["post_processor_id"] for job in jobs] == [kept["id"]]


# --- retry, without a worker ------------------------------------------------


def test_retry_of_a_job_that_has_not_failed_is_409(client):
    dataset, item, job = uploaded_with_one_job(client)

    # The quick test model never fails: the job is pending, processing or
    # completed, none of which can be retried.
    response = client.post(f"{item_path(dataset, item)}/jobs/{job['id']}/retry")

    problem(response, 409)
    [after] = item_jobs(client, dataset, item)
    assert after["attempts"] <= 1


def test_retry_of_an_unknown_job_is_404(client):
    dataset = make_dataset(client)
    make_quick_post_processor(client, dataset)
    item, other = make_item(client, dataset), make_item(client, dataset)
    ok(upload(client, dataset, other, b"text"))
    [job_of_other] = item_jobs(client, dataset, other)

    problem(client.post(f"{item_path(dataset, item)}/jobs/{uuid.uuid4()}/retry"), 404)
    problem(client.post(f"{item_path(dataset, item)}/jobs/{job_of_other['id']}/retry"), 404)


def test_retry_with_an_invalid_max_attempts_is_422(client):
    dataset, item, job = uploaded_with_one_job(client)

    response = client.post(
        f"{item_path(dataset, item)}/jobs/{job['id']}/retry", json={"max_attempts": 0}
    )

    assert error_locs(problem(response, 422)) == [["body", "max_attempts"]]


# --- in bulk, without a worker ----------------------------------------------


def fail_job(job_id, attempts=1):
    from shared.db import session_scope
    from shared.models import PostProcessorJob

    with session_scope() as session:
        row = session.get_one(PostProcessorJob, uuid.UUID(job_id))
        row.status, row.attempts, row.error = "failed", attempts, "Provider said 503."


def test_bulk_retry_retries_the_failed_jobs_and_no_other(client):
    dataset, item, job = uploaded_with_one_job(client)
    other_item = make_item(client, dataset)
    ok(upload(client, dataset, other_item, b"more text"))
    [untouched] = item_jobs(client, dataset, other_item)
    fail_job(job["id"])

    answer = ok(client.post(jobs_path(dataset) + "/retry", json={"status": "failed"}))

    assert answer == {"retried": 1, "skipped": 0, "busy": 0}
    [retried] = item_jobs(client, dataset, item)
    assert (retried["status"], retried["attempts"], retried["error"]) == ("pending", 1, None)
    [after] = item_jobs(client, dataset, other_item)
    assert after["attempts"] == untouched["attempts"] and after["status"] != "failed"
    again = ok(client.post(jobs_path(dataset) + "/retry", json={"status": "failed"}))
    assert again == {"retried": 0, "skipped": 0, "busy": 0}


def test_bulk_retry_skips_jobs_without_attempts_unless_the_cap_is_raised(client):
    dataset, item, job = uploaded_with_one_job(client)
    fail_job(job["id"], attempts=3)
    path = jobs_path(dataset) + "/retry"

    assert ok(client.post(path, json={"status": "failed"})) == {
        "retried": 0,
        "skipped": 1,
        "busy": 0,
    }
    raised = ok(client.post(path, json={"status": "failed", "max_attempts": 4}))
    assert raised == {"retried": 1, "skipped": 0, "busy": 0}
    [after] = item_jobs(client, dataset, item)
    assert (after["status"], after["attempts"], after["max_attempts"]) == ("pending", 3, 4)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body", "status"]),
        ({"status": "completed"}, ["body", "status"]),
        ({"status": "failed", "model_type": "speech"}, ["body", "model_type"]),
        ({"status": "failed", "created_before": "2026-01-01T00:00:00"}, ["body", "created_before"]),
        ({"status": "failed", "error_contains": ""}, ["body", "error_contains"]),
        ({"status": "failed", "max_attempts": 0}, ["body", "max_attempts"]),
        ({"status": "failed", "post_processor_id": "nope"}, ["body", "post_processor_id"]),
    ],
)
def test_bulk_retry_with_a_bad_filter_is_422(client, body, loc):
    dataset = make_dataset(client)

    assert error_locs(problem(client.post(jobs_path(dataset) + "/retry", json=body), 422)) == [loc]


def test_bulk_retry_and_summary_of_an_unknown_dataset_are_404(client):
    path = f"/datasets/{uuid.uuid4()}/post-processors/jobs"
    problem(client.post(path + "/retry", json={"status": "failed"}), 404)
    problem(client.get(path + "/summary"), 404)


def test_the_job_summary_counts_by_post_processor_and_lists_the_common_errors(client):
    dataset, item, job = uploaded_with_one_job(client)
    fail_job(job["id"])

    summary = ok(client.get(jobs_path(dataset) + "/summary"))

    [post_processor] = summary["post_processors"]
    assert post_processor["post_processor_id"] == job["post_processor_id"]
    assert post_processor["counts"] == {
        "pending": 0, "processing": 0, "completed": 0, "failed": 1, "total": 1,
    }  # fmt: skip
    assert summary["errors"] == [
        {"error": "Provider said 503.", "count": 1, "post_processor_id": job["post_processor_id"]}
    ]

"""Retrying a dataset's failed jobs in bulk, and its job summary, on the real
database, without a worker."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.db import session_scope
from shared.errors import NotFound
from shared.models import JobStatus, PostProcessor, PostProcessorJob
from shared.services import job_bulk
from shared.services.job_bulk import RetryFilter
from tests.shared.factories import add_item, add_job, new_version


def a_dataset(jobs_of_each: dict[str, list[dict]]):
    """A new user's dataset with a post-processor per key of `jobs_of_each`
    (its model type), each with a job per dict of fields: (dataset_id,
    user_id, {model_type: post_processor_id}, [job ids in order])."""
    with session_scope() as session:
        version, first = new_version(session, model_type="ocr", model_id="")
        post_processors = {"ocr": first}
        for model_type in jobs_of_each:
            if model_type not in post_processors:
                row = PostProcessor(
                    dataset_id=version.dataset_id,
                    user_id=version.user_id,
                    name=model_type,
                    model_type=model_type,
                )
                session.add(row)
                session.flush()
                post_processors[model_type] = row
        job_ids = []
        for model_type, fields_list in jobs_of_each.items():
            for fields in fields_list:
                item = add_item(session, version)
                job = add_job(session, item, post_processors[model_type].id, **fields)
                job_ids.append(job.id)
        return (
            version.dataset_id,
            version.user_id,
            {name: row.id for name, row in post_processors.items()},
            job_ids,
        )


def failed(error: str = "boom", attempts: int = 1, **fields) -> dict:
    return {"status": JobStatus.FAILED.value, "attempts": attempts, "error": error, **fields}


def rows(job_ids):
    with session_scope() as session:
        return [session.get_one(PostProcessorJob, job_id) for job_id in job_ids]


def retry(dataset_id, user_id, **chosen):
    with session_scope() as session:
        return job_bulk.retry_failed(session, user_id, dataset_id, RetryFilter(**chosen))


def test_failed_jobs_are_retried_once_each_and_no_other_job_runs_again(sent):
    dataset_id, user_id, _, ids = a_dataset(
        {
            "ocr": [failed(attempts=1), failed(attempts=2), failed(attempts=1)]
            + [{"status": status, "attempts": 1} for status in ("completed", "pending")]
            + [{"status": "processing", "attempts": 1}]
        }
    )

    assert retry(dataset_id, user_id) == job_bulk.Retried(retried=3, skipped=0)

    after = rows(ids)
    assert [job.status for job in after] == [
        "pending", "pending", "pending", "completed", "pending", "processing",
    ]  # fmt: skip
    assert [job.attempts for job in after[:3]] == [1, 2, 1]  # never reset
    assert [job.error for job in after[:3]] == [None] * 3
    assert sorted(message.job_id for message in sent) == sorted(str(i) for i in ids[:3])


def test_jobs_without_an_attempt_left_are_skipped_unless_the_cap_is_raised(sent):
    dataset_id, user_id, _, ids = a_dataset(
        {"ocr": [failed(attempts=3, max_attempts=3), failed(attempts=1, max_attempts=3)]}
    )

    assert retry(dataset_id, user_id) == job_bulk.Retried(retried=1, skipped=1)
    assert [job.status for job in rows(ids)] == ["failed", "pending"]

    assert retry(dataset_id, user_id, max_attempts=5) == job_bulk.Retried(retried=1, skipped=0)
    [used_up, _] = rows(ids)
    assert (used_up.status, used_up.attempts, used_up.max_attempts) == ("pending", 3, 5)
    assert len(sent) == 2


def test_max_attempts_raises_the_cap_and_never_lowers_it(sent):
    dataset_id, user_id, _, ids = a_dataset(
        {"ocr": [failed(attempts=4, max_attempts=10), failed(attempts=2, max_attempts=2)]}
    )

    assert retry(dataset_id, user_id, max_attempts=3) == job_bulk.Retried(retried=2, skipped=0)

    assert [(job.attempts, job.max_attempts) for job in rows(ids)] == [(4, 10), (2, 3)]


def test_the_filter_picks_by_post_processor_model_type_error_and_creation_time(sent):
    long_ago = datetime.now(UTC) - timedelta(days=10)
    dataset_id, user_id, post_processors, ids = a_dataset(
        {
            "ocr": [
                failed("Provider said 503 Service Unavailable"),
                failed("the image is corrupt", created_at=long_ago),
            ],
            "llm": [failed("provider SAID 503 again"), failed("100% wrong")],
        }
    )
    ocr, llm = post_processors["ocr"], post_processors["llm"]

    def picked(**chosen):
        with session_scope() as session:
            # Rolled back: each filter sees all four failed.
            result = job_bulk.retry_failed(session, user_id, dataset_id, RetryFilter(**chosen))
            session.rollback()
        return result.retried

    assert picked(post_processor_id=ocr) == 2
    assert picked(model_type="llm") == 2
    assert picked(model_type="ocr", error_contains="said 503") == 1
    assert picked(error_contains="SAID 503") == 2  # either case
    assert picked(error_contains="100%") == 1  # % is a character, not a wildcard
    assert picked(error_contains="0%") == 1
    assert picked(created_before=long_ago + timedelta(days=1)) == 1
    assert picked(created_after=long_ago + timedelta(days=1)) == 3
    assert picked(post_processor_id=llm, created_before=long_ago) == 0
    with pytest.raises(NotFound):
        picked(post_processor_id=uuid.uuid4())
    other_dataset, _, others, _ = a_dataset({"ocr": [failed()]})
    with pytest.raises(NotFound):
        picked(post_processor_id=others["ocr"])


def test_simultaneous_bulk_retries_enqueue_each_job_once(sent):
    dataset_id, user_id, _, ids = a_dataset({"ocr": [failed(attempts=1) for _ in range(20)]})
    barrier = threading.Barrier(8)
    results: list[job_bulk.Retried] = []

    def run():
        barrier.wait()
        results.append(retry(dataset_id, user_id))

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(result.retried for result in results) == 20
    assert sorted(message.job_id for message in sent) == sorted(str(i) for i in ids)
    assert {job.status for job in rows(ids)} == {"pending"}


def test_another_users_dataset_is_not_found(sent):
    dataset_id, _user_id, _, ids = a_dataset({"ocr": [failed(attempts=1)]})
    with session_scope() as session:
        stranger, _ = new_version(session)
    with pytest.raises(NotFound):
        retry(dataset_id, stranger.user_id)
    with session_scope() as session, pytest.raises(NotFound):
        job_bulk.summary(session, stranger.user_id, dataset_id)
    assert rows(ids)[0].status == "failed" and sent == []


def test_the_summary_counts_each_post_processors_jobs_and_the_common_errors():
    dataset_id, user_id, post_processors, _ = a_dataset(
        {
            "ocr": [failed("corrupt image")] * 3
            + [failed("x" * 400 + "a"), failed("x" * 400 + "b")]
            + [{"status": "completed"}] * 2,
            "llm": [failed("timeout")] + [{"status": "pending"}],
            "ner": [],
        }
    )
    with session_scope() as session:
        summary = job_bulk.summary(session, user_id, dataset_id)

    counts = {row.model_type: row.counts for row in summary.post_processors}
    assert counts["ocr"] == {
        "pending": 0, "processing": 0, "completed": 2, "failed": 5, "total": 7,
    }  # fmt: skip
    assert counts["llm"] == {
        "pending": 1, "processing": 0, "completed": 0, "failed": 1, "total": 2,
    }  # fmt: skip
    assert counts["ner"]["total"] == 0
    ocr = post_processors["ocr"]
    assert [(e.error, e.count, e.post_processor_id) for e in summary.errors] == [
        ("corrupt image", 3, ocr),
        # Told apart only after their first 300 characters: one error.
        ("x" * job_bulk.ERROR_HEAD, 2, ocr),
        ("timeout", 1, post_processors["llm"]),
    ]

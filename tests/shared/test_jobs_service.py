"""The job state machine, on the real database, without a worker."""

from __future__ import annotations

import threading

from shared.db import session_scope
from shared.errors import Conflict
from shared.inference.base import ModelOutput
from shared.models import DatasetItem, JobStatus, PostProcessorJob
from shared.services import jobs
from shared.services.execution import run_job
from shared.services.retries import RetryPolicy
from tests.shared.factories import make_job


def job_row(job_id):
    with session_scope() as session:
        return session.get_one(PostProcessorJob, job_id)


def test_a_job_is_claimed_once(sent):
    job, _item, _version = make_job()
    with session_scope() as session:
        first = jobs.claim_job(session, job.id)
    with session_scope() as session:
        second = jobs.claim_job(session, job.id)

    assert first is not None and first.attempt == 1
    assert second is None
    assert job_row(job.id).status == "processing"


def test_a_stale_run_cannot_record_its_result(sent):
    job, _item, _version = make_job()
    with session_scope() as session:
        stale = jobs.claim_job(session, job.id)
    # The job is taken back and claimed again, as after a lost worker.
    with session_scope() as session:
        session.get_one(PostProcessorJob, job.id).status = JobStatus.PENDING.value
    with session_scope() as session:
        current = jobs.claim_job(session, job.id)

    with session_scope() as session:
        assert not jobs.complete_job(session, stale, ModelOutput(raw={"run": "stale"}, text="x"))
    with session_scope() as session:
        assert jobs.complete_job(session, current, ModelOutput(raw={"run": "current"}, text="y"))

    row = job_row(job.id)
    assert (row.status, row.attempts, row.result) == ("completed", 2, '{"run": "current"}')


def test_simultaneous_retries_enqueue_once(sent):
    job, item, version = make_job(status=JobStatus.FAILED, attempts=1)
    outcomes: list[str] = []
    barrier = threading.Barrier(10)

    def retry():
        barrier.wait()
        try:
            with session_scope() as session:
                jobs.retry_job(
                    session, job.user_id, job.dataset_id, version.id, item.id, job.id, None
                )
            outcomes.append("retried")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=retry) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["conflict"] * 9 + ["retried"]
    assert [message.job_id for message in sent] == [str(job.id)]
    assert job_row(job.id).status == "pending"


def test_a_message_for_a_deleted_item_is_dropped(sent):
    job, item, _version = make_job()
    with session_scope() as session:
        session.delete(session.get_one(DatasetItem, item.id))

    assert run_job(job.id).status == "skipped"
    with session_scope() as session:
        assert session.get(PostProcessorJob, job.id) is None


def test_a_permanent_error_fails_without_retry(sent):
    job, _item, _version = make_job(model_id="test-reject")

    outcome = run_job(job.id)

    assert (outcome.status, outcome.attempt) == ("failed", 1)
    row = job_row(job.id)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.error == "the test model rejects every input"
    assert row.completed_at is not None
    assert sent == []


def test_back_off_grows_exponentially_up_to_its_cap():
    policy = RetryPolicy.from_settings()
    delays = [policy.backoff(attempt) for attempt in range(1, 6)]
    assert delays == [0.2, 0.4, 0.8, 1.0, 1.0]  # 0.2 s base and 1 s cap in the tests


def test_back_off_honours_retry_after_up_to_its_cap():
    policy = RetryPolicy.from_settings()
    assert policy.backoff(1, retry_after=0.5) == 0.5
    assert policy.backoff(3, retry_after=0.5) == 0.8  # the exponential is longer
    assert policy.backoff(1, retry_after=3600) == 1.0  # capped


def test_a_next_try_only_for_a_transient_failure_with_attempts_left():
    policy = RetryPolicy(base_seconds=2, cap_seconds=300)
    assert policy.next_try(1, 3) == 2
    assert policy.next_try(2, 3, retry_after=30) == 30
    assert policy.next_try(3, 3) is None
    assert policy.next_try(1, 3, transient=False) is None

"""The reaper takes back jobs whose worker is gone and resends lost messages."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from shared.db import session_scope
from shared.models import JobStatus, PostProcessorJob, utcnow
from shared.services.reaper import sweep
from shared.settings import get_settings
from tests.shared.factories import make_job


def age(job_id, seconds, **values):
    """Make a job look as if it had been in its state for `seconds`."""
    then = utcnow() - timedelta(seconds=seconds)
    with session_scope() as session:
        session.execute(
            update(PostProcessorJob)
            .where(PostProcessorJob.id == job_id)
            .values(started_at=then, updated_at=then, **values)
        )


def row(job_id):
    with session_scope() as session:
        return session.get_one(PostProcessorJob, job_id)


def lost_after():
    settings = get_settings()
    return settings.task_time_limit_seconds + settings.reaper_processing_margin_seconds


def sweep_once():
    with session_scope() as session:
        return sweep(session)


def swept_lost_job(attempts):
    """The row, after a sweep, of a job on attempt `attempts` whose worker is gone."""
    job, _item, _version = make_job(status=JobStatus.PROCESSING, attempts=attempts)
    age(job.id, lost_after() + 5)

    sweep_once()

    return row(job.id)


def test_a_job_whose_worker_died_is_taken_back_and_resent(sent):
    taken = swept_lost_job(attempts=1)

    assert (taken.status, taken.attempts) == ("pending", 1)
    assert "Attempt 1 was lost" in taken.error
    assert [message.job_id for message in sent] == [str(taken.id)]


def test_a_lost_job_without_attempts_left_fails(sent):
    failed = swept_lost_job(attempts=3)

    assert (failed.status, failed.attempts) == ("failed", 3)
    assert failed.completed_at is not None
    assert sent == []


def test_a_job_still_within_its_time_limit_is_left_alone(sent):
    job, _item, _version = make_job(status=JobStatus.PROCESSING, attempts=1)
    age(job.id, lost_after() - 30)

    sweep_once()

    assert row(job.id).status == "processing"
    assert sent == []


def test_a_pending_job_whose_message_was_lost_is_resent_once(sent):
    job, _item, _version = make_job(status=JobStatus.PENDING)
    age(job.id, get_settings().reaper_pending_after_seconds + 5)

    sweep_once()
    sweep_once()  # the first sweep touched it: no second message

    assert [message.job_id for message in sent] == [str(job.id)]
    assert row(job.id).status == "pending"


def test_a_recent_pending_job_is_not_resent(sent):
    job, _item, _version = make_job(status=JobStatus.PENDING)
    age(job.id, 5)

    sweep_once()

    assert sent == []

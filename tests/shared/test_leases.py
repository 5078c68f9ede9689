"""A claimed job is leased to its worker, which renews the lease while the
model runs; the reaper takes back a job whose lease ran out."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from sqlalchemy import delete, update

from shared.db import session_scope
from shared.inference.base import ModelOutput
from shared.models import PostProcessorJob, utcnow
from shared.services import jobs
from shared.services.execution import Outcome, RunOutcome, abandon_lost_run, lease_kept
from shared.services.reaper import sweep
from shared.settings import get_settings
from tests.fixtures import wait_until
from tests.shared.factories import make_job


def claim(job_id):
    with session_scope() as session:
        claimed = jobs.claim_job(session, job_id)
    assert claimed is not None
    return claimed


def row(job_id):
    with session_scope() as session:
        return session.get_one(PostProcessorJob, job_id)


def set_times(job_id, **seconds_from_now):
    """Set each named timestamp of the job to now plus its seconds."""
    values = {name: utcnow() + timedelta(seconds=s) for name, s in seconds_from_now.items()}
    with session_scope() as session:
        session.execute(
            update(PostProcessorJob).where(PostProcessorJob.id == job_id).values(**values)
        )


def forget(job_id):
    with session_scope() as session:
        session.execute(delete(PostProcessorJob).where(PostProcessorJob.id == job_id))


def set_lease(job_id, seconds_from_now):
    set_times(job_id, lease_expires_at=seconds_from_now)


def sweep_once():
    with session_scope() as session:
        return sweep(session)


def test_a_claim_leases_the_job_to_its_worker():
    job, _item, _version = make_job()
    before = utcnow()

    claim(job.id)

    lease = get_settings().job_lease_seconds
    claimed = row(job.id)
    assert claimed.status == "processing"
    assert (
        before + timedelta(seconds=lease)
        <= claimed.lease_expires_at
        <= utcnow() + timedelta(seconds=lease)
    )


def test_the_heartbeat_renews_the_lease_while_the_model_runs(monkeypatch):
    monkeypatch.setattr(get_settings(), "job_heartbeat_seconds", 0.05)
    job, _item, _version = make_job()
    claimed = claim(job.id)
    set_lease(job.id, 1)
    short = row(job.id).lease_expires_at

    with lease_kept(claimed):
        wait_until(lambda: row(job.id).lease_expires_at > short + timedelta(seconds=30), 10)
    renewed = row(job.id)

    assert (renewed.status, renewed.attempts) == ("processing", 1)
    # The heartbeat has stopped by the time the run records its outcome.
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("lease-")]


def test_the_heartbeat_stops_at_the_hard_time_limit(monkeypatch):
    """A thread cannot be killed at the hard limit as a pool process is: its
    lease is left to run out, and the reaper takes the job back."""
    monkeypatch.setattr(get_settings(), "job_heartbeat_seconds", 0.05)
    job, _item, _version = make_job()
    claimed = claim(job.id)

    with lease_kept(claimed, hard_limit=0.2):
        # While the run goes on, the heartbeat ends...
        wait_until(
            lambda: not [t for t in threading.enumerate() if t.name.startswith("lease-")], 10
        )
        # ...and renews no more.
        set_lease(job.id, 1)
        short = row(job.id).lease_expires_at
        time.sleep(0.3)
        assert row(job.id).lease_expires_at == short
    forget(job.id)  # its lease runs out in a second: no other test's reaper must see it


def test_the_reaper_takes_back_a_job_whose_lease_ran_out(sent):
    job, _item, _version = make_job()
    claim(job.id)
    set_lease(job.id, -1)

    swept = sweep_once()

    taken = row(job.id)
    assert swept.taken_back == 1
    assert (taken.status, taken.attempts, taken.lease_expires_at) == ("pending", 1, None)
    assert "Attempt 1 was lost" in taken.error
    assert [message.job_id for message in sent] == [str(job.id)]


def test_the_reaper_leaves_a_live_lease_alone_however_long_the_run(sent):
    job, _item, _version = make_job()
    claim(job.id)
    settings = get_settings()
    # Longer ago than the time-limit rule allows: the live lease decides.
    long_ago = utcnow() - timedelta(
        seconds=settings.longest_time_limit + settings.reaper_processing_margin_seconds + 60
    )
    with session_scope() as session:
        session.execute(
            update(PostProcessorJob)
            .where(PostProcessorJob.id == job.id)
            .values(started_at=long_ago, updated_at=long_ago)
        )

    sweep_once()

    assert row(job.id).status == "processing"
    assert sent == []


def test_a_lease_renewed_after_the_reaper_looked_keeps_the_job(sent):
    job, _item, _version = make_job()
    claimed = claim(job.id)
    looked_at = utcnow()
    with session_scope() as session:
        assert jobs.renew_lease(session, claimed)

    with session_scope() as session:
        status = jobs.abandon_attempt(
            session, job.id, 1, "lost", lease_expired_at=looked_at - timedelta(seconds=1)
        )

    assert status is None
    assert row(job.id).status == "processing"
    assert sent == []


def test_a_stale_attempt_cannot_renew_the_lease(sent, caplog, monkeypatch):
    job, _item, _version = make_job()
    stale = claim(job.id)
    set_lease(job.id, -1)
    sweep_once()
    claim(job.id)  # attempt 2, by another worker
    lease_of_attempt_2 = row(job.id).lease_expires_at

    with session_scope() as session:
        assert not jobs.renew_lease(session, stale)
    assert row(job.id).lease_expires_at == lease_of_attempt_2

    # Its heartbeat says so once, and stops renewing.
    monkeypatch.setattr(get_settings(), "job_heartbeat_seconds", 0.01)
    with caplog.at_level(logging.WARNING, logger="itemflow.jobs"), lease_kept(stale):
        wait_until(lambda: "event=job.lease_lost" in caplog.text, 10)
    assert caplog.text.count("event=job.lease_lost") == 1
    current = row(job.id)
    assert (current.attempts, current.lease_expires_at) == (2, lease_of_attempt_2)


def test_a_lost_run_is_taken_back_by_its_holder_at_once(sent):
    """The worker's main process saw the pool process die: the attempt
    counts, the job goes back to pending and is sent again after its
    back-off, long before its lease would run out."""
    job, _item, _version = make_job()
    with session_scope() as session:
        claimed = jobs.claim_job(session, job.id, holder="w@host:41:message-1")
    assert row(job.id).claimed_by == "w@host:41:message-1"

    outcome = abandon_lost_run(job.id, claimed.holder, "was lost: its process died (signal 9)")

    assert outcome == Outcome(
        RunOutcome.RETRYING, 1, "Attempt 1 was lost: its process died (signal 9)."
    )
    taken = row(job.id)
    assert (taken.status, taken.attempts, taken.claimed_by) == ("pending", 1, None)
    assert taken.error == outcome.error
    assert [message.job_id for message in sent] == [str(job.id)]
    # Its message finds no claim left to take back.
    assert abandon_lost_run(job.id, claimed.holder, "again") is None
    assert len(sent) == 1


def test_a_lost_run_leaves_a_later_claim_and_a_written_outcome_alone(sent):
    job, _item, _version = make_job()
    lost = claim(job.id)
    # The lease had lapsed and the reaper took the job back before the
    # worker reported the loss; another run holds the job now.
    set_lease(job.id, -1)
    sweep_once()
    current = claim(job.id)

    assert abandon_lost_run(job.id, lost.holder, "was lost") is None
    assert (row(job.id).status, row(job.id).attempts) == ("processing", 2)

    # A run that wrote its outcome before its process died counted already.
    with session_scope() as session:
        assert jobs.complete_job(session, current, ModelOutput(raw="done"))
    assert abandon_lost_run(job.id, current.holder, "was lost") is None
    assert (row(job.id).status, row(job.id).attempts) == ("completed", 2)


def test_a_lost_run_with_no_attempts_left_fails_the_job(sent):
    job, _item, _version = make_job(attempts=2)
    claimed = claim(job.id)  # attempt 3 of 3

    outcome = abandon_lost_run(job.id, claimed.holder, "was lost: its process died (signal 9)")

    assert outcome is not None and outcome.status is RunOutcome.FAILED
    failed = row(job.id)
    assert (failed.status, failed.attempts) == ("failed", 3)
    assert failed.error == "Attempt 3 was lost: its process died (signal 9)."
    assert sent == []


def test_only_the_holder_of_a_claim_writes_its_outcome(sent):
    """Two runs with the same attempt number (a claim resumed by another
    delivery of the message): the one that no longer holds the claim
    writes nothing and renews nothing."""
    job, _item, _version = make_job()
    first = claim(job.id)
    with session_scope() as session:
        second = jobs.claim_job(session, job.id, resume=[first.holder])
    assert second is not None and second.attempt == first.attempt == 1

    with session_scope() as session:
        assert not jobs.renew_lease(session, first)
        assert not jobs.complete_job(session, first, ModelOutput(raw="first"))
        assert jobs.complete_job(session, second, ModelOutput(raw="second"))
    assert (row(job.id).status, row(job.id).result) == ("completed", '"second"')


def test_a_claim_whose_commit_answer_was_lost_is_resumed_without_an_attempt(sent):
    """The claim committed, but its run never learned it (the connection
    dropped with the commit's answer): the message's retry names that run
    and takes its claim over, as the same attempt. Nobody else can."""
    job, _item, _version = make_job()
    unaware = claim(job.id)

    with session_scope() as session:
        assert jobs.claim_job(session, job.id) is None  # a duplicate message
        assert jobs.claim_job(session, job.id, resume=["some other run"]) is None
        resumed = jobs.claim_job(session, job.id, resume=["an earlier run", unaware.holder])
    assert resumed is not None

    taken = row(job.id)
    assert (taken.status, taken.attempts, taken.claimed_by) == (
        "processing",
        1,
        resumed.holder,
    )
    # Resuming names only a run that holds the claim: once the job is done,
    # nothing is left to take over.
    with session_scope() as session:
        assert jobs.complete_job(session, resumed, ModelOutput(raw="done"))
        assert jobs.claim_job(session, job.id, resume=[resumed.holder]) is None
    assert (row(job.id).status, row(job.id).attempts) == ("completed", 1)


def test_resuming_claims_a_pending_job_as_a_new_attempt(sent):
    """Where the claim never committed, the job is still pending: the
    retry claims it as any message would."""
    job, _item, _version = make_job()

    with session_scope() as session:
        claimed = jobs.claim_job(session, job.id, resume=["a run whose claim never committed"])

    assert claimed is not None and claimed.attempt == 1
    assert (row(job.id).status, row(job.id).attempts) == ("processing", 1)


def test_a_run_stopped_by_a_shutdown_is_put_back_without_counting(sent):
    job, _item, _version = make_job()
    claim(job.id)
    claimed = claim_again_after_a_lost_run(job.id)  # attempt 2

    with session_scope() as session:
        assert jobs.put_back(session, claimed)

    put_back = row(job.id)
    assert (put_back.status, put_back.attempts, put_back.lease_expires_at) == ("pending", 1, None)
    assert "Attempt 2 was stopped by a worker shutdown" in put_back.error
    assert [message.job_id for message in sent] == [str(job.id)] * 2
    # The next claim gets attempt 2 again.
    assert claim(job.id).attempt == 2


def test_a_run_still_going_is_put_back_with_one_more_attempt_not_its_number(sent):
    """A thread that cannot be stopped keeps running after its job is put
    back: the next claim must not get its attempt number, or the late
    outcome would pass the guard."""
    job, _item, _version = make_job()
    still_running = claim(job.id)

    with session_scope() as session:
        assert jobs.put_back(session, still_running, still_running=True)

    put_back = row(job.id)
    assert (put_back.status, put_back.attempts, put_back.max_attempts) == ("pending", 1, 4)
    assert "Attempt 1 was still running when its worker shut down" in put_back.error
    assert [message.job_id for message in sent] == [str(job.id)]
    assert claim(job.id).attempt == 2
    with session_scope() as session:
        assert not jobs.complete_job(session, still_running, ModelOutput(raw="late"))
    assert row(job.id).status == "processing"
    forget(job.id)


def test_a_stale_run_cannot_put_the_job_back(sent):
    job, _item, _version = make_job()
    stale = claim(job.id)
    claim_again_after_a_lost_run(job.id)

    with session_scope() as session:
        assert not jobs.put_back(session, stale)

    current = row(job.id)
    assert (current.status, current.attempts) == ("processing", 2)


def claim_again_after_a_lost_run(job_id):
    """Attempt 1's lease runs out, the reaper takes the job back (sending it
    once), and another worker claims attempt 2."""
    set_lease(job_id, -1)
    sweep_once()
    return claim(job_id)


def test_a_worker_whose_clock_is_behind_keeps_its_job(sent, monkeypatch):
    """Leases are taken and compared by the database's clock: a worker
    machine five minutes slow neither writes a lease that has already run
    out nor loses its job to the reaper."""
    job, _item, _version = make_job()
    monkeypatch.setattr(jobs, "utcnow", lambda: utcnow() - timedelta(minutes=5))
    claimed = claim(job.id)
    with session_scope() as session:
        assert jobs.renew_lease(session, claimed)
    monkeypatch.undo()

    swept = sweep_once()

    assert swept.taken_back == 0
    assert row(job.id).status == "processing"
    assert sent == []

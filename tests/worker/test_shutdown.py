"""The worker's warm shutdown as the job runner sees it: an interrupt stops
the model and puts the job back without counting the attempt, and the soft
time limit ends the attempt as a transient failure."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from shared.db import session_scope
from shared.inference.deadline import NoSlotInTime
from shared.models import PostProcessorJob
from shared.services import execution, jobs
from tests.shared.factories import make_job
from worker.shutdown import WarmShutdown


def row(job_id):
    with session_scope() as session:
        return session.get_one(PostProcessorJob, job_id)


def serve(monkeypatch: pytest.MonkeyPatch, model: object) -> None:
    registry = type("Registry", (), {"get": lambda self, *_: model})()
    monkeypatch.setattr(execution, "get_registry", lambda: registry)


class InterruptedModel:
    """Stands for a model whose process gets the worker's interrupt while it
    runs."""

    def __init__(self, shutdown: WarmShutdown) -> None:
        self.shutdown = shutdown

    def run(self, item, file, config):
        self.shutdown.interrupt()
        raise AssertionError("the interrupt did not stop the model")


class OutOfTimeModel:
    def run(self, item, file, config):
        raise SoftTimeLimitExceeded()


def test_an_interrupted_model_puts_its_job_back(sent, monkeypatch):
    shutdown = WarmShutdown()
    job, _item, _version = make_job()
    serve(monkeypatch, InterruptedModel(shutdown))

    outcome = execution.run_job(job.id, shutdown)

    assert outcome.status == "put_back"
    put_back = row(job.id)
    assert (put_back.status, put_back.attempts) == ("pending", 0)
    assert [message.job_id for message in sent] == [str(job.id)]
    assert shutdown.stopping


def test_an_interrupt_that_came_before_the_model_ran_still_puts_the_job_back(sent):
    """The signal reached the process while it was claiming the job, when it
    could not yet stop anything: it is kept, and the model never starts (this
    job's model would fail it for good)."""
    shutdown = WarmShutdown()
    job, _item, _version = make_job(model_id="test-reject")
    shutdown.interrupt()

    outcome = execution.run_job(job.id, shutdown)

    assert outcome.status == "put_back"
    assert (row(job.id).status, row(job.id).attempts) == ("pending", 0)


def test_an_interrupt_outside_a_model_only_marks_the_process_stopping():
    shutdown = WarmShutdown()
    shutdown.interrupt()
    assert shutdown.stopping


def test_the_soft_time_limit_ends_the_attempt_as_a_transient_failure(sent, monkeypatch):
    job, _item, _version = make_job()
    serve(monkeypatch, OutOfTimeModel())

    outcome = execution.run_job(job.id, WarmShutdown())

    assert (outcome.status, outcome.error) == ("retrying", "The job ran out of time.")
    assert (row(job.id).status, row(job.id).attempts) == ("pending", 1)


class NoSlotModel:
    """Stands for a model whose provider's call slots stayed taken for the
    whole attempt: no call was made."""

    def run(self, item, file, config):
        raise NoSlotInTime("no call slot of 'openai' came free in time")


def test_a_job_that_waited_its_time_for_a_providers_slot_is_put_back_uncounted(sent, monkeypatch):
    job, _item, _version = make_job()
    serve(monkeypatch, NoSlotModel())

    outcome = execution.run_job(job.id, WarmShutdown())

    assert outcome.status == "put_back"
    put_back = row(job.id)
    assert (put_back.status, put_back.attempts) == ("pending", 0)
    assert "ran out of time waiting for a provider's call slot" in put_back.error
    assert [message.job_id for message in sent] == [str(job.id)]


def test_a_run_leaves_a_later_claim_of_its_job_in_the_in_flight_list():
    """A run past its hard limit whose job was taken back and claimed again
    by this worker must not, as it ends, drop the new run from the list
    that a shutdown hands back."""
    job, _item, _version = make_job()
    with session_scope() as session:
        first = jobs.claim_job(session, job.id)
    later = dataclasses.replace(first, attempt=2)
    in_flight = execution.InFlight()

    with contextlib.ExitStack() as later_run:
        with in_flight.holding(first):
            later_run.enter_context(in_flight.holding(later))
        # The first run has ended; the later one goes on.
        assert len(in_flight) == 1
    assert len(in_flight) == 0

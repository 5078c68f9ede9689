"""Run one job: claim it, run its model outside any transaction while a
heartbeat renews the claim's lease, record the outcome. Called by the
worker's task; kept here so it can be tested without Celery."""

from __future__ import annotations

import enum
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Protocol

from shared.db import session_scope
from shared.inference import deadline
from shared.inference.base import ModelOutput, PermanentError, TransientError
from shared.inference.registry import get_registry
from shared.models import JobStatus, PostProcessorJob
from shared.redact import sanitise
from shared.services import jobs
from shared.services.retries import DATABASE_ERRORS
from shared.settings import get_settings
from shared.storage import get_storage

# Raised by the worker's soft time limit (a process's) or by a model's own
# bounded wait (a thread's): both end the attempt as a transient failure.
OutOfTime = deadline.OutOfTime

log = logging.getLogger("itemflow.jobs")


class Interrupted(BaseException):
    """Raised into a running model when its worker stops it at the end of a
    shutdown grace period. A BaseException, so that a model's own
    `except Exception` cannot swallow it."""


class RunControl(Protocol):
    """What the process running a job may do to it. The worker's warm
    shutdown (worker/shutdown.py) interrupts models and ends attempts at
    their time limit; `UNSUPERVISED` does neither."""

    @property
    def stopping(self) -> bool:
        """Whether this process has been told to stop: it starts no job."""

    def attempt(self) -> AbstractContextManager[None]:
        """Around the whole attempt: raises OutOfTime when its time is up."""

    def model(self) -> AbstractContextManager[None]:
        """Around the model's run, the only place an interrupt may land (not
        while an outcome is written): raises Interrupted at once when the
        process is stopping, or while the model runs when told to stop."""


class Unsupervised:
    """A run that nothing stops, for callers outside a worker."""

    stopping = False

    def attempt(self) -> AbstractContextManager[None]:
        return nullcontext()

    def model(self) -> AbstractContextManager[None]:
        return nullcontext()


UNSUPERVISED = Unsupervised()


class RunOutcome(enum.StrEnum):
    """How a delivery of a job's message ended."""

    COMPLETED = "completed"
    RETRYING = "retrying"  # a transient failure; sent again after its back-off
    FAILED = "failed"
    SKIPPED = "skipped"  # nothing to claim, or a stale run's result discarded
    PUT_BACK = "put_back"  # interrupted by a shutdown; the attempt not counted


@dataclass(frozen=True)
class Outcome:
    status: RunOutcome
    attempt: int = 0
    error: str = ""


class InFlight:
    """The runs this process holds a claim for. In a pool of threads nothing
    can stop a run that waits on the network: at the end of a shutdown's
    grace period the worker hands such runs back instead (`hand_back`)."""

    def __init__(self) -> None:
        self._runs: dict[uuid.UUID, jobs.ClaimedJob] = {}
        self._lock = threading.Lock()

    @contextmanager
    def holding(self, claimed: jobs.ClaimedJob) -> Iterator[None]:
        with self._lock:
            self._runs[claimed.job_id] = claimed
        try:
            yield
        finally:
            with self._lock:
                # Only this run's entry: a later claim of the same job (this
                # one's lease lapsed) may have taken the key meanwhile.
                if self._runs.get(claimed.job_id) is claimed:
                    del self._runs[claimed.job_id]

    def __len__(self) -> int:
        with self._lock:
            return len(self._runs)

    def hand_back(self) -> int:
        """Put the jobs of the runs still going back to pending, sent again
        for another worker, without counting their attempts. The runs are
        not stopped (the worker then exits); had one gone on, its outcome
        would have found its claim gone."""
        with self._lock:
            runs = list(self._runs.values())
        handed = 0
        for claimed in runs:
            with session_scope() as session:
                handed += jobs.put_back(session, claimed, still_running=True)
        return handed


# This process's runs (a pool process's one, or a pool of threads' many).
in_flight = InFlight()


class DatabaseFailed(Exception):
    """The database failed a run (down, restarting, or the connection lost).
    `holders` are the runs whose claim the next delivery of the message may
    take over without counting an attempt (`jobs.claim_job`'s `resume`):
    this run's, and while its claim's commit is in doubt, the earlier ones
    it tried to resume. Raised from the database's error."""

    def __init__(self, holders: list[str]) -> None:
        super().__init__(holders)
        self.holders = holders


def run_job(
    job_id: uuid.UUID,
    control: RunControl = UNSUPERVISED,
    holder: str = "",
    resume: Sequence[str] = (),
) -> Outcome:
    try:
        with session_scope() as session:
            claimed = jobs.claim_job(session, job_id, holder, resume)
    except DATABASE_ERRORS as error:
        # The commit may have gone through, its answer lost.
        raise DatabaseFailed([*resume, holder]) from error
    if claimed is None:
        # Already taken, finished, or deleted with its item: a duplicate or
        # stale message, dropped without error.
        log.info("event=job.skipped job_id=%s", job_id)
        return Outcome(RunOutcome.SKIPPED)
    try:
        with in_flight.holding(claimed):
            return _run_claimed(claimed, control)
    except DATABASE_ERRORS as error:
        # The outcome was not written (or its commit is in doubt): the job
        # stays this run's until the message comes again.
        raise DatabaseFailed([claimed.holder]) from error


def _run_claimed(claimed: jobs.ClaimedJob, control: RunControl) -> Outcome:
    job_id = claimed.job_id
    context = f"job_id={job_id} item_id={claimed.item.id} attempt={claimed.attempt}"
    log.info("event=job.started %s model_type=%s", context, claimed.config.model_type)
    soft, hard = get_settings().time_limits_for(claimed.config.model_type)
    started = time.monotonic()
    try:
        # The heartbeat stops before any outcome is recorded below.
        with (
            lease_kept(claimed, context, hard),
            control.attempt(),
            deadline.attempt_lasting(soft),
        ):
            output = _run_model(claimed, control)
    except PermanentError as error:
        return _record_failure(claimed, context, str(error), transient=False)
    except TransientError as error:
        return _record_failure(
            claimed, context, str(error), transient=True, retry_after=error.retry_after
        )
    except deadline.NoSlotInTime:
        # Queued behind the operator's max_concurrency for the provider:
        # back to the broker, the attempt not counted, as a shutdown's.
        with session_scope() as session:
            put_back = jobs.put_back(
                session, claimed, reason="ran out of time waiting for a provider's call slot"
            )
        log.warning("event=job.put_back %s reason=no_slot held=%s", context, put_back)
        return Outcome(RunOutcome.PUT_BACK if put_back else RunOutcome.SKIPPED, claimed.attempt)
    except OutOfTime:
        return _record_failure(claimed, context, "The job ran out of time.", transient=True)
    except Interrupted:
        with session_scope() as session:
            put_back = jobs.put_back(session, claimed)
        log.warning("event=job.put_back %s held=%s", context, put_back)
        return Outcome(RunOutcome.PUT_BACK if put_back else RunOutcome.SKIPPED, claimed.attempt)
    except Exception as error:  # a model's unexpected error may pass: retry it
        log.exception("event=job.error %s", context)
        # Its message may quote anything the model touched: kept short and
        # without what looks like a credential, as a provider's error is.
        message = sanitise(f"{type(error).__name__}: {error}")
        return _record_failure(claimed, context, message, transient=True)
    with session_scope() as session:
        recorded = jobs.complete_job(session, claimed, output)
    seconds = time.monotonic() - started
    if not recorded:
        return Outcome(RunOutcome.SKIPPED, claimed.attempt)
    log.info("event=job.completed %s seconds=%.2f", context, seconds)
    return Outcome(RunOutcome.COMPLETED, claimed.attempt)


def abandon_lost_run(job_id: uuid.UUID, holder: str, why: str) -> Outcome | None:
    """The run `holder` will never report back: its worker saw its process
    die (killed, out of memory, a crash in a model), or killed it at its
    hard time limit. Count the attempt now, as the reaper would once the
    lease ran out: back to pending, sent again after its back-off, or
    failed when no attempts are left. None when that run no longer holds
    the job (it wrote its outcome, or never claimed it)."""
    with session_scope() as session:
        # Read once: abandon_attempt finds the row in the session, and its
        # guarded UPDATE decides.
        job = session.get(PostProcessorJob, job_id)
        if job is None or job.status != JobStatus.PROCESSING.value or job.claimed_by != holder:
            return None
        attempt = job.attempts
        error = f"Attempt {attempt} {why}."
        status = jobs.abandon_attempt(session, job_id, attempt, error, holder=holder)
    if status is None:
        return None
    failed = status == JobStatus.FAILED.value
    return Outcome(RunOutcome.FAILED if failed else RunOutcome.RETRYING, attempt, error)


@contextmanager
def lease_kept(
    claimed: jobs.ClaimedJob, context: str = "", hard_limit: float | None = None
) -> Iterator[None]:
    """Renew the job's lease every `job_heartbeat_seconds` from a thread
    while the body runs, so that the reaper leaves the job to this worker as
    long as its process lives, and no longer than `hard_limit` seconds. The
    thread has ended when this returns."""
    stopping = threading.Event()
    renew_until = time.monotonic() + hard_limit if hard_limit is not None else None
    heartbeat = threading.Thread(
        target=_heartbeat,
        args=(claimed, context or f"job_id={claimed.job_id}", stopping, renew_until),
        name=f"lease-{claimed.job_id}",
        # A process ending mid-run (a hard time limit) must not wait for it.
        daemon=True,
    )
    heartbeat.start()
    try:
        yield
    finally:
        stopping.set()
        # Bounded: a renewal stuck on a dead connection must not hold up
        # recording the outcome (the attempt guard makes a late one harmless).
        heartbeat.join(timeout=5)


def _heartbeat(
    claimed: jobs.ClaimedJob, context: str, stopping: threading.Event, renew_until: float | None
) -> None:
    interval = get_settings().job_heartbeat_seconds
    while not stopping.wait(interval):
        if renew_until is not None and time.monotonic() > renew_until:
            # Past the hard time limit. A pool process would have been
            # killed by now; a thread cannot be, so its lease runs out and
            # the reaper counts the attempt. An outcome that comes after the
            # reaper's sweep finds the claim gone; one that comes before it
            # still counts, as it would have within the limit.
            log.warning("event=job.past_hard_limit %s; the lease is left to run out", context)
            return
        try:
            # A session of its own: the run holds no transaction open.
            with session_scope() as session:
                held = jobs.renew_lease(session, claimed)
        except Exception:
            # The database may be back before the lease runs out.
            log.exception("event=job.lease_renewal_failed %s", context)
            continue
        if not held:
            # Taken back (or deleted) meanwhile: the run goes on, but its
            # outcome will find the claim gone and be discarded.
            log.warning("event=job.lease_lost %s", context)
            return


def _run_model(claimed: jobs.ClaimedJob, control: RunControl) -> ModelOutput:
    config = claimed.config
    model = get_registry().get(config.model_type, config.model_id, claimed.registered_model)
    with ExitStack() as stack:
        file = None
        if claimed.file_key:
            file = stack.enter_context(get_storage().local_path(claimed.file_key))
            if not file.exists():
                raise PermanentError("The item's file is missing from storage.")
        with control.model():
            return model.run(claimed.item, file, claimed.config)


def _record_failure(
    claimed: jobs.ClaimedJob,
    context: str,
    error: str,
    transient: bool,
    retry_after: float | None = None,
) -> Outcome:
    with session_scope() as session:
        backoff = jobs.fail_attempt(session, claimed, error, transient, retry_after)
    if backoff is not None:
        log.warning("event=job.retrying %s backoff=%.1f error=%r", context, backoff, error)
        return Outcome(RunOutcome.RETRYING, claimed.attempt, error)
    log.warning("event=job.failed %s error=%r", context, error)
    return Outcome(RunOutcome.FAILED, claimed.attempt, error)

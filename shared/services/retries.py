"""When a job is tried again, and after how long: one policy, used by the
jobs service (a model's error, a run out of time), the reaper (a run whose
worker died) and the worker's task (a message that came while the database
was down).

- A failed attempt is tried again when its failure is transient (the model
  raised TransientError or an unexpected error, ran out of time, or its run
  was lost) and attempts remain; a PermanentError fails the job at once.
- The next attempt waits base × 2^(attempt − 1) seconds, at least what the
  service asked for in Retry-After, and never more than the cap: a service
  must not park a job for hours, and the reaper counts on the cap.
- A run stopped by its worker's shutdown is not an attempt: it is put back
  at once, without a back-off.
- A message delivered while the database is unreachable is no attempt
  either: the task sends it again itself (DATABASE_OUTAGE), for about a
  quarter of an hour, sooner than the reaper's sweep for quiet jobs would.
  A run whose claim or outcome the outage left in doubt is resumed by that
  message without counting an attempt.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import InterfaceError, OperationalError

from shared.settings import Settings, get_settings

DATABASE_ERRORS = (OperationalError, InterfaceError)


@dataclass(frozen=True)
class OutageRetries:
    """The task's own retry of its message while the database is down: 2, 4,
    8, 16, 32, then 60 s, 20 times, without jitter so that the quarter of
    an hour is what it says. A copy for a job already claimed or done finds
    nothing."""

    first_seconds: float = 2.0
    longest_seconds: float = 60.0
    max_retries: int = 20

    def countdown(self, retries: int) -> float:
        return float(min(self.first_seconds * 2**retries, self.longest_seconds))


DATABASE_OUTAGE = OutageRetries()


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float
    cap_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> RetryPolicy:
        settings = settings or get_settings()
        return cls(settings.retry_backoff_seconds, settings.retry_backoff_max_seconds)

    def next_try(
        self,
        attempt: int,
        max_attempts: int,
        *,
        transient: bool = True,
        retry_after: float | None = None,
    ) -> float | None:
        """Seconds until the attempt after `attempt`, or None when the job
        fails for good: a permanent failure, or no attempts left."""
        if not transient or attempt >= max_attempts:
            return None
        return self.backoff(attempt, retry_after)

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        exponential = self.base_seconds * 2 ** max(attempt - 1, 0)
        return float(min(max(exponential, retry_after or 0.0), self.cap_seconds))

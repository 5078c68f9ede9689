"""Failed authentication is limited per client address, so that keys cannot
be guessed at the speed of the server.

In memory, per API process: with several API processes a client gets the
allowance of each. Keys are 256 random bits, so this guards against noise
and abuse rather than against a guess that could ever succeed.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque

from shared.errors import TooManyRequests


class FailedAuthLimiter:
    def __init__(self, allowed: int, window_seconds: float) -> None:
        self.allowed = allowed
        self.window = window_seconds
        self._failures: defaultdict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        """Raise TooManyRequests while `client` has used up its failures."""
        now = time.monotonic()
        with self._lock:
            failures = self._recent(client, now)
            if len(failures) >= self.allowed:
                wait = max(1, int(failures[0] + self.window - now) + 1)
                raise TooManyRequests(
                    f"Too many failed authentications from this address; try again in {wait} s.",
                    retry_after=wait,
                )

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(client, now).append(now)

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures[client]
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            # Forget quiet clients, so the table does not grow without end.
            del self._failures[client]
            failures = self._failures[client]
        return failures

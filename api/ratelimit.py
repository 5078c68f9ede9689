"""Failed authentication is limited per client address, so that keys cannot
be tried at the speed of the server.

Over its limit, an address gets 429 for every key that fails (and for
requests with no key), while a valid key still gets in: clients behind one
NAT or proxy are not locked out by someone else's noise. Keys are 256 random
bits, so the limit guards against load and abuse, not a guess that could
succeed.

In memory, per API process: with several API processes a client gets the
allowance of each.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from shared.errors import TooManyRequests

# Past this many addresses with recent failures, the oldest are forgotten, so
# that failures from ever-new (IPv6) addresses cannot grow the table forever.
MAX_CLIENTS = 100_000


class FailedAuthLimiter:
    def __init__(self, allowed: int, window_seconds: float) -> None:
        self.allowed = allowed
        self.window = window_seconds
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def over_limit(self, client: str) -> TooManyRequests | None:
        """The error to answer with while `client` has used up its failures."""
        now = time.monotonic()
        with self._lock:
            failures = self._recent(client, now)
            if failures is None or len(failures) < self.allowed:
                return None
            wait = max(1, int(failures[0] + self.window - now) + 1)
        return TooManyRequests(
            f"Too many failed authentications from this address; try again in {wait} s.",
            retry_after=wait,
        )

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            failures = self._recent(client, now)
            if failures is None:
                if len(self._failures) >= MAX_CLIENTS:
                    del self._failures[next(iter(self._failures))]
                failures = self._failures[client] = deque()
            failures.append(now)

    def _recent(self, client: str, now: float) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures

"""Known API keys, remembered for a few seconds per API process, so that a
request does not spend a database transaction proving a key it proved a
moment ago. Only keys that were found are kept: a new key works at once,
and a wrong one is looked up (and counted by the failed-auth limiter)
every time. A deleted key keeps working for at most API_KEY_CACHE_SECONDS
in a process that saw it."""

from __future__ import annotations

import threading
import time
import uuid

# Past this many keys, the table starts again, so that it stays small.
MAX_KEYS = 10_000


class KeyCache:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._known: dict[str, tuple[uuid.UUID, float]] = {}
        self._lock = threading.Lock()

    def user_for(self, digest: str) -> uuid.UUID | None:
        """The user of the key with this sha256, if it was proved lately."""
        with self._lock:
            known = self._known.get(digest)
            if known is None:
                return None
            user_id, until = known
            if time.monotonic() >= until:
                del self._known[digest]
                return None
            return user_id

    def remember(self, digest: str, user_id: uuid.UUID) -> None:
        if self.seconds <= 0:
            return
        with self._lock:
            if len(self._known) >= MAX_KEYS:
                self._known.clear()
            self._known[digest] = (user_id, time.monotonic() + self.seconds)

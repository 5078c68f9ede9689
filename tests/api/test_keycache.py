"""The API process remembers a key it found for API_KEY_CACHE_SECONDS."""

from __future__ import annotations

import uuid

from api import keycache
from api.keycache import KeyCache

USER = uuid.uuid4()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_found_is_trusted_for_its_seconds_then_asked_again(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(keycache.time, "monotonic", clock)
    cache = KeyCache(seconds=5)

    assert cache.user_for("digest") is None  # never seen: the database is asked
    cache.remember("digest", USER)
    clock.now += 4.9
    assert cache.user_for("digest") == USER
    clock.now += 0.1
    assert cache.user_for("digest") is None  # a deleted key stops working now


def test_no_seconds_means_no_cache():
    cache = KeyCache(seconds=0)
    cache.remember("digest", USER)
    assert cache.user_for("digest") is None


def test_the_table_stays_small(monkeypatch):
    monkeypatch.setattr(keycache, "MAX_KEYS", 3)
    cache = KeyCache(seconds=60)
    for index in range(4):
        cache.remember(f"digest-{index}", USER)

    assert [cache.user_for(f"digest-{index}") for index in range(4)] == [None, None, None, USER]

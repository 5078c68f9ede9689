"""Failed authentications are limited per client address."""

from __future__ import annotations

import time

import pytest

from api import ratelimit
from api.http import failed_auth_limiter
from api.ratelimit import FailedAuthLimiter
from shared.settings import get_settings
from tests.builders import ok, problem


@pytest.fixture
def three_failures_a_minute(monkeypatch):
    """The in-process API server, allowing 3 failures a minute for this test."""
    monkeypatch.setattr(get_settings(), "auth_failures_per_minute", 3)
    failed_auth_limiter.cache_clear()
    yield
    failed_auth_limiter.cache_clear()


def test_after_too_many_failures_the_client_is_told_to_wait(
    three_failures_a_minute, anonymous, client
):
    bad = {"Authorization": "Bearer ifk_not-a-key"}
    for _ in range(3):
        problem(anonymous.get("/datasets", headers=bad), 401)

    refused = anonymous.get("/datasets", headers=bad)
    body = problem(refused, 429)
    assert int(refused.headers["retry-after"]) == body["retry_after"] > 0
    problem(anonymous.get("/datasets"), 429)  # no key at all
    # A valid key from the same address still gets in: someone else's noise
    # behind the same NAT must not lock its users out.
    ok(client.get("/datasets"))


def test_successes_do_not_count(three_failures_a_minute, client):
    for _ in range(10):
        ok(client.get("/datasets"))


def test_failures_age_out_of_the_window():
    limiter = FailedAuthLimiter(allowed=2, window_seconds=0.2)
    limiter.failed("10.0.0.1")
    limiter.failed("10.0.0.1")
    assert "Too many failed" in limiter.over_limit("10.0.0.1").detail
    assert limiter.over_limit("10.0.0.2") is None  # another address is not affected

    time.sleep(0.25)
    assert limiter.over_limit("10.0.0.1") is None
    assert limiter._failures == {}  # quiet addresses are forgotten


def test_the_table_of_addresses_is_bounded(monkeypatch):
    monkeypatch.setattr(ratelimit, "MAX_CLIENTS", 3)
    limiter = FailedAuthLimiter(allowed=5, window_seconds=60)
    for number in range(10):
        limiter.failed(f"10.0.0.{number}")
        assert limiter.over_limit(f"10.0.1.{number}") is None  # asking adds nothing
    assert list(limiter._failures) == ["10.0.0.7", "10.0.0.8", "10.0.0.9"]

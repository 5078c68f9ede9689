"""Failed authentications are limited per client address."""

from __future__ import annotations

import pytest

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
    # The same address is refused even with a good key until the minute ends:
    # otherwise guessing would go on at full speed.
    problem(client.get("/datasets"), 429)


def test_successes_do_not_count(three_failures_a_minute, client):
    for _ in range(10):
        ok(client.get("/datasets"))


def test_failures_age_out_of_the_window():
    limiter = FailedAuthLimiter(allowed=2, window_seconds=0.2)
    limiter.failed("10.0.0.1")
    limiter.failed("10.0.0.1")
    with pytest.raises(Exception, match="Too many failed"):
        limiter.check("10.0.0.1")
    limiter.check("10.0.0.2")  # another address is not affected

    import time

    time.sleep(0.25)
    limiter.check("10.0.0.1")

"""Which key a provider call carries, and where: the operator's key only to
the operator's endpoint, a user's own key only for that user's
post-processors, no key at all from the worker's environment to a user's
base_url. Errors carry no credential and only a short excerpt."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from shared.inference.base import PermanentError, TransientError
from shared.inference.providers import connect
from shared.inference.providers.base import MAX_ANSWER_BYTES
from shared.provider_config import ProviderConnection
from shared.redact import sanitise
from shared.settings import get_settings
from tests.shared.inference.fake_llm_server import (
    FakeProvider,
    Reply,
    client,
    openai_answer,
    processor,
)

OPERATOR_KEY = "sk-operator-5d41402abc4b2a76b9719d911017c592"
USER_KEY = "sk-user-7b52009b64fd0a2a49e6d8a939753077"


@pytest.fixture
def operator() -> Iterator[FakeProvider]:
    """The operator's endpoint for a provider named `openai`, with its key
    in the worker's environment."""
    with FakeProvider(Reply(body=openai_answer("operator"))) as fake:
        yield fake


@pytest.fixture
def users_server() -> Iterator[FakeProvider]:
    with FakeProvider(Reply(body=openai_answer("user"))) as fake:
        yield fake


@pytest.fixture(autouse=True)
def declared(operator: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ITEMFLOW_TEST_OPERATOR_KEY", OPERATOR_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OPERATOR_KEY)
    connections = {
        "openai": ProviderConnection(
            protocol="openai",
            base_url=operator.url + "/v1",
            api_key_env="ITEMFLOW_TEST_OPERATOR_KEY",
            user_base_url=True,
        ),
        "keyless": ProviderConnection(protocol="openai", base_url=operator.url + "/v1"),
        "byok": ProviderConnection(
            protocol="openai", base_url=operator.url + "/v1", api_key_env="ITEMFLOW_TEST_UNSET_KEY"
        ),
    }
    monkeypatch.delenv("ITEMFLOW_TEST_UNSET_KEY", raising=False)
    monkeypatch.setattr(get_settings(), "provider_connections", connections)


def authorization(fake: FakeProvider) -> str | None:
    return fake.last.headers.get("authorization")


def test_the_operators_key_goes_to_the_operators_endpoint(operator: FakeProvider) -> None:
    assert connect(processor("openai")).complete("Hi").text == "operator"
    assert authorization(operator) == f"Bearer {OPERATOR_KEY}"


def test_a_users_own_key_replaces_the_operators(operator: FakeProvider) -> None:
    connect(processor("openai", user_key=USER_KEY)).complete("Hi")
    assert authorization(operator) == f"Bearer {USER_KEY}"


def test_a_users_base_url_never_gets_a_key_from_the_worker(
    operator: FakeProvider, users_server: FakeProvider
) -> None:
    assert client("openai", users_server).complete("Hi").text == "user"
    assert authorization(users_server) is None
    assert OPERATOR_KEY not in str(users_server.last.headers)
    client("openai", users_server, user_key=USER_KEY).complete("Hi")
    assert authorization(users_server) == f"Bearer {USER_KEY}"
    assert operator.requests == []


def test_an_endpoint_without_a_key_gets_none(operator: FakeProvider) -> None:
    connect(processor("keyless")).complete("Hi")
    assert authorization(operator) is None


def test_a_missing_operator_key_says_how_to_bring_ones_own(operator: FakeProvider) -> None:
    with pytest.raises(PermanentError, match=r"PUT /api/v1/providers/byok/key"):
        connect(processor("byok"))
    connect(processor("byok", user_key=USER_KEY)).complete("Hi")
    assert authorization(operator) == f"Bearer {USER_KEY}"


def test_a_stored_key_this_worker_cannot_open_fails_the_job_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sealed = processor("openai", user_key=USER_KEY)
    other = "Z" * 43 + "="
    monkeypatch.setattr(get_settings(), "secrets_key", SecretStr(other))
    with pytest.raises(PermanentError, match="same SECRETS_KEY") as raised:
        connect(sealed)
    assert USER_KEY not in str(raised.value)


def test_an_answer_that_echoes_the_key_is_redacted(operator: FakeProvider) -> None:
    echo = {
        "error": {
            "message": f"Incorrect API key provided: {USER_KEY}. Also {USER_KEY[:7]}***"
            f"{USER_KEY[-4:]} and Bearer {USER_KEY}; " + "x" * 1000,
            "type": "invalid_request_error",
        }
    }
    operator.replies.append(Reply(401, echo))
    with pytest.raises(PermanentError) as raised:
        connect(processor("openai", user_key=USER_KEY)).complete("Hi")
    message = str(raised.value)
    assert message.startswith("openai answered 401 Unauthorized: Incorrect API key provided:")
    assert USER_KEY not in message and USER_KEY[-12:] not in message
    assert USER_KEY[-4:] not in message
    assert len(message) < 300
    assert operator.url not in message, "the operator's endpoint is not shown"


def test_a_page_is_cut_short_and_control_characters_go() -> None:
    text = "<html>\x1b[31m" + "secret internal page " * 100 + "</html>"
    cleaned = sanitise(text)
    assert len(cleaned) <= 201 and "\x1b" not in cleaned
    assert sanitise("token sk-proj-abcdefghijklmnop and Basic dXNlcjpwYXNz") == (
        "token [redacted] and [redacted]"
    )


@pytest.mark.parametrize(
    "echo",
    [
        "bad key=ABCDEFGHIJKLMNOPQR, try again",  # glued to other characters
        "xDEFGHIJKLMNOPQRSTUVWX",  # all but its first characters
        "ABCDE\u200bFGHIJ\u200bKLMNO",  # broken up by invisible characters
        "your key ABCD****UVWX is wrong",  # masked in the middle
        "ends with ...QRSTUVWX",
    ],
)
def test_any_part_of_the_key_is_redacted(echo: str) -> None:
    key = "ABCDEFGHIJKLMNOPQRSTUVWX"
    cleaned = sanitise(echo, key)
    assert "[redacted]" in cleaned
    for start in range(len(key) - 3):
        assert key[start : start + 4] not in cleaned, cleaned
    assert sanitise("the model gpt-4o is unknown", key) == "the model gpt-4o is unknown"


def test_the_status_phrase_is_the_standards_not_the_servers(operator: FakeProvider) -> None:
    operator.replies.append(Reply(400, {"error": {"message": "no"}}))
    with pytest.raises(PermanentError) as raised:
        connect(processor("openai")).complete("Hi")
    assert str(raised.value) == "openai answered 400 Bad Request: no"


def test_an_answer_too_large_or_too_deep_is_refused(users_server: FakeProvider) -> None:
    users_server.replies.append(Reply(200, "[" * 100_000 + "]" * 100_000))
    with pytest.raises(PermanentError, match="something other than JSON"):
        client("openai", users_server).complete("Hi")
    users_server.replies.append(Reply(200, "x" * (MAX_ANSWER_BYTES + 1)))
    with pytest.raises(PermanentError, match="larger than 16 MiB"):
        client("openai", users_server).complete("Hi")


def test_errors_name_the_users_base_url_but_not_the_operators(operator: FakeProvider) -> None:
    operator.replies.append(Reply(delay=0.5, body=openai_answer("late")))
    with pytest.raises(TransientError) as raised:
        connect(processor("openai", timeout_s=0.1)).complete("Hi")
    assert str(raised.value) == "openai: no answer within 0.1 s."


@pytest.mark.parametrize("limit", [1, 2])
def test_max_concurrency_bounds_the_calls_in_flight(
    operator: FakeProvider, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    connections = dict(get_settings().provider_connections)
    connections["limited"] = ProviderConnection(
        protocol="openai", base_url=operator.url + "/v1", max_concurrency=limit
    )
    monkeypatch.setattr(get_settings(), "provider_connections", connections)
    in_flight = peak = 0
    lock = threading.Lock()
    original = operator._next

    def counting(request):  # type: ignore[no-untyped-def]
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.3)
        with lock:
            in_flight -= 1
        return original(request)

    monkeypatch.setattr(operator, "_next", counting)
    threads = [
        threading.Thread(target=lambda: connect(processor("limited")).complete("Hi"))
        for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(operator.requests) == 5
    assert peak == limit


def test_a_users_own_server_takes_none_of_the_operators_slots(
    operator: FakeProvider, users_server: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    connections = dict(get_settings().provider_connections)
    connections["openai"] = connections["openai"].model_copy(update={"max_concurrency": 1})
    monkeypatch.setattr(get_settings(), "provider_connections", connections)
    # A user's slow server, answering after the operator's call has had
    # time to wait for a slot it would share.
    users_server.default = Reply(delay=1.0, body=openai_answer("slow"))
    slow = threading.Thread(target=lambda: client("openai", users_server).complete("Hi"))
    slow.start()
    time.sleep(0.2)
    started = time.monotonic()
    assert connect(processor("openai")).complete("Hi").text == "operator"
    waited = time.monotonic() - started
    slow.join()
    assert waited < 0.7, waited


@pytest.mark.parametrize(
    ("provider", "model", "message"),
    [
        (None, "m", "needs external_provider"),
        ("mistral", "m", "No provider is named 'mistral'"),
        ("openai", " ", "external_model is empty"),
    ],
)
def test_the_provider_and_model_must_be_named(
    provider: str | None, model: str, message: str
) -> None:
    with pytest.raises(PermanentError, match=message):
        connect(processor(provider, model))

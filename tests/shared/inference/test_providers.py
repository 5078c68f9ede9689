"""The provider clients against a local HTTP server that speaks each
protocol: real requests, real status codes, real timeouts."""

from __future__ import annotations

import base64
import pickle
import socket
import time
from collections.abc import Iterator
from email.utils import formatdate

import pytest

from shared.inference import deadline
from shared.inference.base import PermanentError, TransientError
from shared.inference.deadline import OutOfTime
from shared.inference.providers import Image, connect
from shared.inference.providers.slots import call_slot
from tests.shared.inference.fake_llm_server import (
    ANSWERS,
    ERROR_BODIES,
    PATHS,
    FakeProvider,
    Reply,
    anthropic_answer,
    client,
    openai_answer,
    processor,
)


@pytest.fixture(params=["openai", "anthropic"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fake(protocol: str) -> Iterator[FakeProvider]:
    with FakeProvider(Reply(body=ANSWERS[protocol]("Hello."))) as server:
        yield server


def test_a_normal_answer(protocol: str, fake: FakeProvider) -> None:
    completion = client(protocol, fake).complete("Say hello.")
    assert completion.text == "Hello."
    assert completion.usage is not None
    assert fake.last.path == PATHS[protocol]
    assert fake.last.body["model"] == "test-model"
    assert fake.last.body["messages"][-1]["role"] == "user"


def test_503_twice_is_transient_each_time_then_the_answer_comes(
    protocol: str, fake: FakeProvider
) -> None:
    busy = {"error": {"message": "The server is overloaded", "type": "overloaded_error"}}
    fake.replies.extend([Reply(503, busy), Reply(503, busy)])
    provider = client(protocol, fake)
    for _attempt in range(2):
        with pytest.raises(
            TransientError, match="503 Service Unavailable: The server is overloaded"
        ):
            provider.complete("Hi")
    assert provider.complete("Hi").text == "Hello."
    assert len(fake.requests) == 3


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "1"}, 0.25),
        ({}, None),
    ],
)
def test_429_is_transient_and_carries_retry_after(
    protocol: str, fake: FakeProvider, headers: dict[str, str], expected: float | None
) -> None:
    limited = {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}
    fake.replies.append(Reply(429, limited, headers))
    with pytest.raises(TransientError, match="429 Too Many Requests: Rate limit reached") as raised:
        client(protocol, fake).complete("Hi")
    assert raised.value.retry_after == expected


def test_retry_after_as_an_http_date(fake: FakeProvider, protocol: str) -> None:
    fake.replies.append(
        Reply(503, "busy", {"retry-after": formatdate(time.time() + 30, usegmt=True)})
    )
    with pytest.raises(TransientError) as raised:
        client(protocol, fake).complete("Hi")
    assert raised.value.retry_after is not None
    assert 25 < raised.value.retry_after <= 30


def test_400_is_permanent_with_the_providers_message(protocol: str, fake: FakeProvider) -> None:
    fake.replies.append(Reply(400, ERROR_BODIES[protocol]))
    message = ERROR_BODIES[protocol]["error"]["message"]
    with pytest.raises(PermanentError, match=f"400 Bad Request: {message}"):
        client(protocol, fake).complete("Hi")


def test_401_without_a_json_body_is_permanent_with_the_body(
    fake: FakeProvider, protocol: str
) -> None:
    fake.replies.append(Reply(401, "invalid key"))
    with pytest.raises(PermanentError, match="401 Unauthorized: invalid key"):
        client(protocol, fake).complete("Hi")


def test_a_timeout_is_transient(protocol: str, fake: FakeProvider) -> None:
    fake.replies.append(Reply(delay=1.0, body=ANSWERS[protocol]("late")))
    started = time.monotonic()
    with pytest.raises(TransientError, match="no answer within 0.2 s"):
        client(protocol, fake, timeout_s=0.2).complete("Hi")
    assert time.monotonic() - started < 0.9


def test_a_call_waits_no_longer_than_the_attempt_has_left(
    protocol: str, fake: FakeProvider
) -> None:
    """In a pool of threads nothing interrupts a call at the soft time
    limit: the call bounds its own wait, and says the attempt ran out."""
    fake.replies.append(Reply(delay=1.0, body=ANSWERS[protocol]("late")))
    started = time.monotonic()
    with deadline.attempt_lasting(0.2), pytest.raises(OutOfTime):
        client(protocol, fake, timeout_s=30).complete("Hi")
    assert time.monotonic() - started < 0.9


def test_a_call_whose_attempt_has_no_time_left_is_not_sent(
    protocol: str, fake: FakeProvider
) -> None:
    with deadline.attempt_lasting(0), pytest.raises(OutOfTime):
        client(protocol, fake).complete("Hi")
    assert fake.requests == []


def test_a_call_waiting_for_a_providers_slot_ends_with_its_attempt(tmp_path) -> None:
    with call_slot(tmp_path, "openai", 1):  # the only slot, taken
        started = time.monotonic()
        with (
            deadline.attempt_lasting(0.2),
            pytest.raises(deadline.NoSlotInTime),
            call_slot(tmp_path, "openai", 1),
        ):
            pytest.fail("the slot was taken")
    assert time.monotonic() - started < 0.9


def test_a_refused_connection_is_transient(protocol: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    provider = connect(processor(protocol, base_url=base_url))
    with pytest.raises(TransientError, match="cannot reach the server: ConnectError"):
        provider.complete("Hi")


def test_a_page_that_is_not_the_api_is_permanent(protocol: str, fake: FakeProvider) -> None:
    fake.replies.append(Reply(200, "<html>Welcome</html>"))
    with pytest.raises(PermanentError, match="something other than JSON"):
        client(protocol, fake).complete("Hi")
    fake.replies.append(Reply(200, {"hello": "world"}))
    with pytest.raises(PermanentError, match="does not follow the protocol"):
        client(protocol, fake).complete("Hi")


def test_an_image_goes_as_an_openai_image_url_part() -> None:
    with FakeProvider(Reply(body=openai_answer("A cat."))) as fake:
        provider = client("openai", fake)
        provider.complete("What is this?", system="Be brief.", image=Image("image/png", b"PNG"))
    system, user = fake.last.body["messages"]
    assert system == {"role": "system", "content": "Be brief."}
    assert user["content"] == [
        {"type": "text", "text": "What is this?"},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"PNG").decode()},
        },
    ]


def test_an_image_goes_as_an_anthropic_base64_block() -> None:
    with FakeProvider(Reply(body=anthropic_answer("A cat."))) as fake:
        provider = client("anthropic", fake)
        provider.complete("What is this?", system="Be brief.", image=Image("image/jpeg", b"JPG"))
    assert fake.last.body["system"] == "Be brief."
    assert fake.last.body["messages"] == [
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {
                        "type": "base64",
                        "media_type": "image/jpeg",
                        "data": base64.b64encode(b"JPG").decode(),
                    },
                },
                {"type": "text", "text": "What is this?"},
            ],
        }
    ]


def test_anthropic_sends_its_version_and_a_max_tokens_and_joins_text_blocks() -> None:
    answer = anthropic_answer("Hello")
    answer["content"] = [
        {"type": "text", "text": "Hello"},
        {"type": "tool_use", "id": "t", "name": "x", "input": {}},
        {"type": "text", "text": ", world."},
    ]
    with FakeProvider(Reply(body=answer)) as fake:
        completion = client("anthropic", fake).complete("Hi")
        assert fake.last.headers["anthropic-version"] == "2023-06-01"
        assert fake.last.body["max_tokens"] == 1024
        assert "temperature" not in fake.last.body
        client("anthropic", fake, max_tokens=50, temperature=0).complete("Hi")
        assert fake.last.body["max_tokens"] == 50
        assert fake.last.body["temperature"] == 0
    assert completion.text == "Hello, world."
    assert completion.usage == {"input_tokens": 12, "output_tokens": 3}


def test_openai_sends_temperature_and_max_tokens_only_when_set() -> None:
    with FakeProvider(Reply(body=openai_answer("ok"))) as fake:
        client("openai", fake).complete("Hi")
        assert set(fake.last.body) == {"model", "messages"}
        client("openai", fake, temperature=0.5, max_tokens=20).complete("Hi")
        assert fake.last.body["temperature"] == 0.5
        assert fake.last.body["max_tokens"] == 20


def test_retry_after_is_optional_and_survives_pickling() -> None:
    assert TransientError("busy").retry_after is None
    copied = pickle.loads(pickle.dumps(TransientError("busy", retry_after=2.5)))
    assert (str(copied), copied.retry_after) == ("busy", 2.5)

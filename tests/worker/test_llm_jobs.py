"""LLM post-processors run by the real worker against a local server that
speaks the provider's protocol: transient answers are retried, permanent
ones fail at once with the provider's message."""

from __future__ import annotations

import json

import pytest

from tests.builders import (
    item_path,
    make_dataset,
    make_item,
    make_post_processor,
    ok,
    upload,
    wait_for_jobs,
)
from tests.shared.inference.fake_llm_server import (
    ANSWERS,
    BASE_PATHS,
    ERROR_BODIES,
    FakeProvider,
    Reply,
)

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(params=["openai", "anthropic"])
def provider(request):
    with FakeProvider(Reply(body=ANSWERS[request.param]("A short summary."))) as fake:
        fake.protocol = request.param
        yield fake


def llm_item(client, provider, prompt="Summarise: {text}"):
    dataset = make_dataset(client, content_type="text")
    make_post_processor(
        client,
        dataset,
        name="summary",
        model_type="llm",
        external_provider=provider.protocol,
        external_model="test-model",
        external_config=json.dumps({"base_url": provider.url + BASE_PATHS[provider.protocol]}),
        prompt=prompt,
    )
    item = make_item(client, dataset, name="note")
    ok(upload(client, dataset, item, b"The meeting moved to Tuesday at ten.\n", "note.txt"))
    return dataset, item


def test_503_twice_then_an_answer_completes_on_the_third_attempt(client, provider):
    provider.replies.extend([Reply(503, {"error": {"message": "overloaded"}})] * 2)
    dataset, item = llm_item(client, provider)

    [job] = wait_for_jobs(client, dataset, item)

    assert (job["status"], job["attempts"]) == ("completed", 3), job
    assert json.loads(job["result"])["answer"] == "A short summary."
    assert ok(client.get(item_path(dataset, item)))["text"] == "A short summary."
    assert len(provider.requests) == 3


def test_400_fails_after_one_attempt_with_the_providers_message(client, provider):
    provider.replies.append(Reply(400, ERROR_BODIES[provider.protocol]))
    dataset, item = llm_item(client, provider)

    [job] = wait_for_jobs(client, dataset, item)

    assert (job["status"], job["attempts"]) == ("failed", 1), job
    assert ERROR_BODIES[provider.protocol]["error"]["message"] in job["error"]
    assert len(provider.requests) == 1

"""Which credentials a worker sends, and where, is the operator's decision:
the real worker, with the operator's key in its environment and its
`openai` provider at a local server (`operator_provider`), against a user's
own server on 127.0.0.1 (allowed to this test system by
PROVIDER_ALLOWED_HOSTS=127.0.0.1)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from shared.db import session_scope
from shared.models import PostProcessor
from tests.builders import (
    error_locs,
    make_dataset,
    make_item,
    ok,
    problem,
    upload,
    wait_for_jobs,
)
from tests.fixtures import OPERATOR_KEY
from tests.shared.inference.fake_llm_server import FakeProvider, Reply, openai_answer

pytestmark = pytest.mark.usefixtures("worker")
USER_KEY = f"sk-user-{uuid.uuid4().hex}"
# Everything of the worker's that must never reach a user's server.
WORKER_SECRETS = [OPERATOR_KEY, *filter(None, [os.environ.get("DATABASE_URL")])]


@pytest.fixture
def users_server() -> Iterator[FakeProvider]:
    with FakeProvider(Reply(body=openai_answer("From the user's own server."))) as fake:
        yield fake


def post_processor(
    client: httpx.Client, dataset: dict[str, Any], config: dict[str, Any], prompt: str
) -> dict[str, Any]:
    body = {
        "name": "summary",
        "model_type": "llm",
        "external_provider": "openai",
        "external_model": "test-model",
        "external_config": json.dumps(config),
        "prompt": prompt,
    }
    return ok(client.post(f"/datasets/{dataset['id']}/post-processors", json=body), 201)


def run(client: httpx.Client, dataset: dict[str, Any]) -> list[dict[str, Any]]:
    item = make_item(client, dataset, name="note")
    ok(upload(client, dataset, item, b"The meeting moved to Tuesday.\n", "note.txt"))
    return wait_for_jobs(client, dataset, item)


def save_as_before(post_processor_id: str, config: dict[str, Any]) -> None:
    """Write a configuration the way the API took it before this check."""
    with session_scope() as session:
        session.execute(
            update(PostProcessor)
            .where(PostProcessor.id == uuid.UUID(post_processor_id))
            .values(external_config=json.dumps(config))
        )


def requests_for(fake: FakeProvider, token: str) -> list[Any]:
    return [request for request in fake.requests if token in json.dumps(request.body)]


def no_worker_secret_in(fake: FakeProvider) -> None:
    for request in fake.requests:
        seen = json.dumps(request.headers) + json.dumps(request.body)
        for secret in WORKER_SECRETS:
            assert secret not in seen, f"a worker's secret reached {request.path}"


def test_a_variable_named_in_external_config_never_leaves_the_worker(
    client: httpx.Client, users_server: FakeProvider
) -> None:
    dataset = make_dataset(client, content_type="text")
    named = {"base_url": users_server.url + "/v1", "api_key_env": "DATABASE_URL"}
    body = problem(
        client.post(
            f"/datasets/{dataset['id']}/post-processors",
            json={
                "model_type": "llm",
                "external_provider": "openai",
                "external_model": "m",
                "external_config": json.dumps(named),
            },
        ),
        422,
    )
    assert error_locs(body) == [["body", "external_config", "api_key_env"]]
    # Saved before the check: the worker refuses it the same way.
    token = uuid.uuid4().hex
    for variable in ("DATABASE_URL", "OPENAI_API_KEY"):
        created = post_processor(client, dataset, {"base_url": users_server.url + "/v1"}, token)
        save_as_before(created["id"], {**named, "api_key_env": variable})

    jobs = run(client, dataset)

    assert [(job["status"], job["attempts"]) for job in jobs] == [("failed", 1)] * 2, jobs
    for job in jobs:
        assert "api_key_env is not accepted" in job["error"]
        assert not any(secret in job["error"] for secret in WORKER_SECRETS)
    assert users_server.requests == []


def test_a_users_server_on_an_allowed_address_works_without_any_key_of_the_worker(
    client: httpx.Client, users_server: FakeProvider
) -> None:
    dataset = make_dataset(client, content_type="text")
    post_processor(client, dataset, {"base_url": users_server.url + "/v1"}, "Sum up: {text}")

    [job] = run(client, dataset)

    assert (job["status"], job["attempts"]) == ("completed", 1), job
    assert json.loads(job["result"])["answer"] == "From the user's own server."
    assert "authorization" not in users_server.last.headers
    no_worker_secret_in(users_server)


def test_a_base_url_saved_before_on_a_forbidden_address_is_refused_by_the_worker(
    client: httpx.Client,
) -> None:
    with FakeProvider(Reply(body=openai_answer("inside")), host="127.0.0.2") as inside:
        dataset = make_dataset(client, content_type="text")
        for base_url in (inside.url + "/v1", "http://169.254.169.254/v1"):
            created = post_processor(client, dataset, {}, "Hi {text}")
            save_as_before(created["id"], {"base_url": base_url})

        jobs = run(client, dataset)

        assert [(job["status"], job["attempts"]) for job in jobs] == [("failed", 1)] * 2
        errors = sorted(job["error"] for job in jobs)
        assert "127.0.0.2 is a loopback address" in errors[0] + errors[1]
        assert "169.254.169.254 is a link-local address" in errors[0] + errors[1]
        assert inside.requests == []


def test_the_operators_key_goes_only_to_the_operators_endpoint(
    client: httpx.Client, users_server: FakeProvider, operator_provider: FakeProvider
) -> None:
    token = uuid.uuid4().hex
    dataset = make_dataset(client, content_type="text")
    post_processor(client, dataset, {}, f"{token} operator: {{text}}")
    post_processor(client, dataset, {"base_url": users_server.url + "/v1"}, f"{token}: {{text}}")

    jobs = run(client, dataset)

    assert [job["status"] for job in jobs] == ["completed"] * 2, jobs
    [to_operator] = requests_for(operator_provider, f"{token} operator")
    assert to_operator.headers["authorization"] == f"Bearer {OPERATOR_KEY}"
    [to_user] = requests_for(users_server, token)
    assert "authorization" not in to_user.headers
    no_worker_secret_in(users_server)


def test_a_users_own_key_serves_that_users_post_processors_only(
    client: httpx.Client,
    other_client: httpx.Client,
    users_server: FakeProvider,
    operator_provider: FakeProvider,
) -> None:
    ok(client.put("/providers/openai/key", json={"api_key": USER_KEY}))
    token = uuid.uuid4().hex
    sent_by: dict[str, dict[str, Any]] = {}
    for who, http in (("owner", client), ("other", other_client)):
        dataset = make_dataset(http, content_type="text")
        post_processor(http, dataset, {}, f"{token} {who} operator: {{text}}")
        post_processor(http, dataset, {"base_url": users_server.url + "/v1"}, f"{token} {who}")
        assert [job["status"] for job in run(http, dataset)] == ["completed"] * 2
        sent_by[who] = dataset

    def authorizations(fake: FakeProvider, words: str) -> list[str | None]:
        return [r.headers.get("authorization") for r in requests_for(fake, f"{token} {words}")]

    # The owner's key, on the operator's endpoint and on the owner's own.
    assert authorizations(operator_provider, "owner operator") == [f"Bearer {USER_KEY}"]
    assert authorizations(users_server, "owner") == [f"Bearer {USER_KEY}"]
    # Another user: the operator's key to the operator, nothing elsewhere.
    assert authorizations(operator_provider, "other operator") == [f"Bearer {OPERATOR_KEY}"]
    assert authorizations(users_server, "other") == [None]
    no_worker_secret_in(users_server)

    # Answered by no route: the providers, the post-processors, the jobs.
    dataset = sent_by["owner"]
    answers = [
        client.get("/providers"),
        client.get(f"/datasets/{dataset['id']}/post-processors"),
        client.get(f"/datasets/{dataset['id']}/post-processors/jobs"),
        other_client.get("/providers"),
    ]
    for answer in answers:
        assert answer.status_code == 200 and USER_KEY not in answer.text

"""The operator's providers as users see them, users' own keys (write-only),
and the provider settings a post-processor may and may not have."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select, update

from shared.db import session_scope
from shared.models import PostProcessor, ProviderKey
from tests.builders import error_locs, make_dataset, make_post_processor, ok, problem

KEY = "sk-user-0f8e2d6c4a2b9e7d5c3a1f0e8d6c4b2a"


def providers(client):
    return {entry["name"]: entry for entry in ok(client.get("/providers"))}


def test_the_providers_are_listed_with_no_key_of_the_callers(client):
    listed = providers(client)
    assert set(listed) == {"openai", "anthropic"}
    assert listed["openai"] == {
        "name": "openai",
        "protocol": "openai",
        "models": [],
        "user_base_url": True,
        "has_key": False,
        "key_updated_at": None,
    }


def test_a_stored_key_is_never_answered_and_is_kept_encrypted(client, other_client):
    stored = ok(client.put("/providers/openai/key", json={"api_key": KEY}))
    assert stored["has_key"] is True and stored["key_updated_at"]
    assert KEY not in json.dumps(stored)
    listed = client.get("/providers")
    assert KEY not in listed.text and providers(client)["openai"]["has_key"] is True
    assert providers(other_client)["openai"]["has_key"] is False
    with session_scope() as session:
        sealed = session.scalars(select(ProviderKey.sealed_key)).all()
    assert sealed and not any(KEY in token or KEY[8:20] in token for token in sealed)


def test_a_key_is_replaced_and_deleted_and_deleting_none_is_no_error(client):
    ok(client.put("/providers/anthropic/key", json={"api_key": KEY}))
    first = providers(client)["anthropic"]["key_updated_at"]
    ok(client.put("/providers/anthropic/key", json={"api_key": KEY + "2"}))
    assert providers(client)["anthropic"]["key_updated_at"] > first
    for _ in range(2):
        deleted = ok(client.delete("/providers/anthropic/key"))
        assert (deleted["has_key"], deleted["key_updated_at"]) == (False, None)
    assert providers(client)["anthropic"]["has_key"] is False


def test_another_users_delete_leaves_a_key_alone(client, other_client):
    ok(client.put("/providers/openai/key", json={"api_key": KEY}))
    ok(other_client.delete("/providers/openai/key"))
    assert providers(client)["openai"]["has_key"] is True


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"api_key": ""},
        {"api_key": "two words"},
        {"api_key": "x\r\nX-Evil: 1"},
        {"api_key": "k" * 4097},
        {"api_key": 5},
    ],
)
def test_a_key_that_is_not_one_is_422(client, body):
    assert error_locs(problem(client.put("/providers/openai/key", json=body), 422)) == [
        ["body", "api_key"]
    ]


def test_a_provider_the_operator_has_not_declared_is_404(client):
    problem(client.put("/providers/mistral/key", json={"api_key": KEY}), 404)
    problem(client.delete("/providers/mistral/key"), 404)


# --- what a post-processor may ask for ----------------------------------------


def create(client, dataset, **fields):
    body = {"model_type": "llm", "external_provider": "openai", "external_model": "m", **fields}
    return client.post(f"/datasets/{dataset['id']}/post-processors", json=body)


@pytest.mark.parametrize(
    ("config", "loc", "words"),
    [
        ({"api_key_env": "DATABASE_URL"}, ["external_config", "api_key_env"], "not accepted"),
        ({"base_url": "http://10.1.2.3/v1"}, ["external_config", "base_url"], "private"),
        ({"base_url": "http://169.254.169.254/"}, ["external_config", "base_url"], "link-local"),
        ({"base_url": "http://[::ffff:a9fe:a9fe]/"}, ["external_config", "base_url"], "link-local"),
        ({"base_url": "http://127.0.0.2:8000/v1"}, ["external_config", "base_url"], "loopback"),
        ({"base_url": "http://0x7f000002/v1"}, ["external_config", "base_url"], "loopback"),
        ({"headers": {"Authorization": "x"}}, ["external_config", "headers"], "not a known field"),
        ({"temperature": 9}, ["external_config", "temperature"], "less than or equal to 2"),
    ],
)
def test_a_post_processor_that_asks_for_what_the_operator_decides_is_422(
    client, config, loc, words
):
    dataset = make_dataset(client)
    body = problem(create(client, dataset, external_config=json.dumps(config)), 422)
    assert error_locs(body) == [["body", *loc]]
    assert words in body["detail"]
    assert ok(client.get(f"/datasets/{dataset['id']}/post-processors")) == []


def test_a_base_url_on_an_allowed_host_and_harmless_options_are_taken(client):
    # The test system allows 127.0.0.1 (PROVIDER_ALLOWED_HOSTS).
    dataset = make_dataset(client)
    config = {"base_url": "http://127.0.0.1:11434/v1", "temperature": 0.1, "max_tokens": 64}
    created = ok(create(client, dataset, external_config=json.dumps(config)), 201)
    got = ok(client.get(f"/datasets/{dataset['id']}/post-processors/{created['id']}"))
    assert got["config_error"] == ""


def test_an_update_is_checked_like_a_creation(client):
    dataset = make_dataset(client)
    created = make_post_processor(client, dataset, model_type="llm")
    path = f"/datasets/{dataset['id']}/post-processors/{created['id']}"
    body = problem(client.put(path, json={"external_provider": "acme"}), 422)
    assert error_locs(body) == [["body", "external_provider"]]
    ok(client.put(path, json={"external_provider": "openai"}))
    bad = json.dumps({"base_url": "http://192.168.1.1/v1"})
    problem(client.put(path, json={"external_config": bad}), 422)
    assert ok(client.get(path))["external_config"] == ""


def test_a_saved_setting_that_is_no_longer_allowed_is_explained(client):
    """A row from before the operator decided which keys go where."""
    dataset = make_dataset(client)
    created = ok(create(client, dataset), 201)
    legacy = json.dumps({"base_url": "https://llm.example.org/v1", "api_key_env": "OPENAI_API_KEY"})
    with session_scope() as session:
        session.execute(
            update(PostProcessor)
            .where(PostProcessor.id == uuid.UUID(created["id"]))
            .values(external_config=legacy)
        )
    got = ok(client.get(f"/datasets/{dataset['id']}/post-processors/{created['id']}"))
    assert "api_key_env is not accepted" in got["config_error"]
    [listed] = ok(client.get(f"/datasets/{dataset['id']}/post-processors"))
    assert listed["config_error"] == got["config_error"]
    # A change that leaves the provider settings alone is still allowed.
    ok(client.put(f"/datasets/{dataset['id']}/post-processors/{created['id']}", json={"name": "x"}))

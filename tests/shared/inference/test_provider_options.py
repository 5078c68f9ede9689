"""What a post-processor may ask of a provider: a provider by name, a model,
harmless options within bounds, and a base_url of its own only where the
operator allows it. Checked the same way by the API and by the worker."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.inference.providers.options import Options, Refused, check
from shared.provider_config import BUILT_IN, AllowedHosts, ProviderConnection

CONNECTIONS = {
    **BUILT_IN,
    "team": ProviderConnection(
        protocol="openai",
        base_url="http://10.0.0.7:8000/v1",
        models=("llama-3.1-8b", "qwen2.5-7b"),
    ),
}


def checked(config: dict[str, Any] | str, provider: str = "openai", model: str = "m") -> Options:
    text = config if isinstance(config, str) else json.dumps(config)
    _connection, options = check(provider, model, text, CONNECTIONS, AllowedHosts())
    return options


def refusal(config: dict[str, Any] | str, provider: str = "openai", model: str = "m") -> Refused:
    with pytest.raises(Refused) as raised:
        checked(config, provider, model)
    return raised.value


def test_harmless_options_within_bounds() -> None:
    assert checked("") == Options()
    assert checked({"temperature": 0.2, "max_tokens": 512, "timeout_s": 30}) == Options(
        timeout_s=30.0, temperature=0.2, max_tokens=512
    )
    assert checked({"base_url": "https://llm.example.org/v1/"}).base_url == (
        "https://llm.example.org/v1"
    )


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"api_key_env": "DATABASE_URL"}, "external_config.api_key_env", "not accepted"),
        ({"api_key_env": ""}, "external_config.api_key_env", "PUT /api/v1/providers/openai/key"),
        ({"api_key": "sk-1"}, "external_config.api_key", "not a known field"),
        ({"headers": {"x": "y"}}, "external_config.headers", "not a known field"),
        ({"temperature": 2.5}, "external_config.temperature", "less than or equal to 2"),
        ({"temperature": True}, "external_config.temperature", "a valid number"),
        ({"temperature": float("nan")}, "external_config.temperature", "finite number"),
        ({"timeout_s": "10"}, "external_config.timeout_s", "a valid number"),
        ({"timeout_s": 0}, "external_config.timeout_s", "greater than 0"),
        ({"timeout_s": 3600}, "external_config.timeout_s", "less than or equal to 600"),
        ({"max_tokens": 1.5}, "external_config.max_tokens", "a valid integer"),
        ({"max_tokens": 0}, "external_config.max_tokens", "greater than or equal to 1"),
        ({"base_url": 5}, "external_config.base_url", "a valid string"),
        ({"base_url": "ftp://example.org"}, "external_config.base_url", "http"),
        ({"base_url": "http://169.254.169.254/v1"}, "external_config.base_url", "link-local"),
        ({"base_url": "http://10.0.0.7:8000/v1"}, "external_config.base_url", "private"),
        ({"base_url": "http://127.0.0.1:11434/v1"}, "external_config.base_url", "loopback"),
        ({"base_url": "http://u:p@llm.example.org/v1"}, "external_config.base_url", "password"),
        ("{not json", "external_config", "not valid JSON"),
        ("[1]", "external_config", "must be a JSON object"),
    ],
)
def test_refusals_name_the_field(config: Any, field: str, message: str) -> None:
    refused = refusal(config)
    assert [problem.field for problem in refused.problems] == [field]
    assert message in str(refused)


def test_every_problem_is_reported_at_once() -> None:
    refused = refusal({"api_key_env": "HOME", "temperature": -1, "base_url": "http://10.1.1.1"})
    assert {problem.field for problem in refused.problems} == {
        "external_config.api_key_env",
        "external_config.temperature",
        "external_config.base_url",
    }


def test_a_provider_must_be_one_the_operator_declared() -> None:
    refused = refusal({}, provider="acme")
    assert [problem.field for problem in refused.problems] == ["external_provider"]
    assert "anthropic, openai, team" in str(refused)


def test_the_operators_model_list_and_base_url_choice_hold() -> None:
    assert checked({}, provider="team", model="qwen2.5-7b") == Options()
    refused = refusal({}, provider="team", model="gpt-4o")
    assert [problem.field for problem in refused.problems] == ["external_model"]
    assert "llama-3.1-8b, qwen2.5-7b" in str(refused)
    refused = refusal({"base_url": "https://elsewhere.example/v1"}, provider="team", model="")
    assert [problem.field for problem in refused.problems] == ["external_config.base_url"]
    assert "does not take a base_url" in str(refused)


def test_allowed_hosts_let_a_base_url_on_this_machine_through() -> None:
    config = json.dumps({"base_url": "http://127.0.0.1:11434/v1"})
    allowed = AllowedHosts.parse("127.0.0.1")
    _connection, options = check("openai", "m", config, CONNECTIONS, allowed)
    assert options.base_url == "http://127.0.0.1:11434/v1"

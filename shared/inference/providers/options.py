"""What a post-processor may ask of a provider: the operator's provider by
name, a model, and in `external_config` only harmless options within
bounds (`timeout_s`, `temperature`, `max_tokens`) and, where the operator
allows it, a `base_url` of the user's own.

The API checks a post-processor with `check` when it is created or changed
(a refusal is a 422 naming the field), and the worker checks it again
before every call: the operator's declarations may have changed since, and
rows written before this check existed are refused the same way. The
options themselves are a pydantic model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from shared.inference.base import PermanentError
from shared.provider_config import (
    AllowedHosts,
    ProviderConnection,
    is_http_url,
    literal_host_refusal,
)

DEFAULT_TIMEOUT_S = 60.0
MAX_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Problem:
    field: str  # as the API names it: external_provider, external_config.base_url, ...
    message: str


class Refused(PermanentError):
    """The post-processor asks for something the operator does not allow."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(" ".join(problem.message for problem in problems))
        self.problems = problems


class Options(BaseModel):
    """What `external_config` may set. Strict: "10" is no number and true
    no temperature; a field it does not know is refused, not ignored (a
    typo would run with a setting the user did not mean)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    # The user's own endpoint, where the provider allows one; None: the
    # operator's.
    base_url: str | None = None
    timeout_s: float = Field(default=DEFAULT_TIMEOUT_S, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)

    @field_validator("base_url")
    @classmethod
    def _without_trailing_slash(cls, value: str | None) -> str | None:
        return None if value is None else value.strip().rstrip("/")


def check(
    provider: str,
    model: str,
    external_config: str,
    connections: dict[str, ProviderConnection],
    allowed: AllowedHosts,
) -> tuple[ProviderConnection, Options]:
    """The operator's connection and the post-processor's options, or
    Refused with every problem found."""
    connection = connections.get(provider)
    if connection is None:
        names = ", ".join(sorted(connections)) or "none"
        raise Refused(
            [Problem("external_provider", f"No provider is named {provider!r}; there is {names}.")]
        )
    problems: list[Problem] = []
    model = model.strip()
    if model and connection.models and model not in connection.models:
        problems.append(
            Problem(
                "external_model",
                f"Provider {provider!r} serves only the models {', '.join(connection.models)}.",
            )
        )
    config = _json_object(external_config)
    if isinstance(config, Problem):
        raise Refused([*problems, config])
    # A null is a field not given, as in every request body.
    given = {key: value for key, value in config.items() if value is not None}
    options = None
    try:
        options = Options.model_validate(given)
    except ValidationError as error:
        problems += [_problem(item, provider, connection) for item in error.errors()]
    base_url = given.get("base_url")
    if isinstance(base_url, str):
        problems += _base_url_problems(base_url.strip().rstrip("/"), provider, connection, allowed)
    if problems or options is None:
        raise Refused(problems)
    return connection, options


def _json_object(text: str) -> dict[str, Any] | Problem:
    try:
        config = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as error:
        return Problem("external_config", f"external_config is not valid JSON: {error}.")
    if config is None:
        return {}
    if not isinstance(config, dict):
        return Problem("external_config", "external_config must be a JSON object.")
    return config


def _problem(item: ErrorDetails, provider: str, connection: ProviderConnection) -> Problem:
    name = ".".join(["external_config", *(str(part) for part in item["loc"])])
    if item["loc"] == ("api_key_env",):
        # The field that let a user send any of the worker's environment
        # variables anywhere: it is gone, and says where to go instead.
        return Problem(
            name,
            "external_config.api_key_env is not accepted: the operator decides which key "
            "each provider uses. To use a key of your own, store it with "
            f"PUT /api/v1/providers/{provider}/key.",
        )
    if item["type"] == "extra_forbidden":
        settable = sorted(set(Options.model_fields) - ({"base_url"} - _own(connection)))
        return Problem(name, f"{name} is not a known field; it may set {', '.join(settable)}.")
    return Problem(name, f"{name}: {item['msg'][0].lower()}{item['msg'][1:]}.")


def _own(connection: ProviderConnection) -> set[str]:
    return {"base_url"} if connection.user_base_url else set()


def _base_url_problems(
    base_url: str, provider: str, connection: ProviderConnection, allowed: AllowedHosts
) -> list[Problem]:
    field = "external_config.base_url"
    if not connection.user_base_url:
        return [Problem(field, f"Provider {provider!r} does not take a base_url of your own.")]
    if not is_http_url(base_url):
        return [Problem(field, f"{field} must be an http(s) URL, not {base_url!r}.")]
    parts = urlsplit(base_url)
    if parts.username is not None or parts.password is not None:
        return [
            Problem(
                field,
                "external_config.base_url may not carry a user name or password; "
                f"store a key with PUT /api/v1/providers/{provider}/key.",
            )
        ]
    refusal = literal_host_refusal(base_url, allowed)
    if refusal is not None:
        return [
            Problem(
                field,
                f"external_config.base_url is refused: {refusal}, which the operator does "
                "not allow (PROVIDER_ALLOWED_HOSTS).",
            )
        ]
    return []

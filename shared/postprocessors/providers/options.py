"""What a post-processor may ask of a provider: the operator's provider by
name, a model, and in `external_config` only harmless options within
bounds (`timeout_s`, `temperature`, `max_tokens`) and, where the operator
allows it, a `base_url` of the user's own.

The API checks a post-processor with `check` when it is created or changed
(a refusal is a 422 naming the field), and the worker checks it again
before every call: the operator's declarations may have changed since, and
rows written before this check existed are refused the same way.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.postprocessors.base import PermanentError
from shared.provider_config import (
    AllowedHosts,
    ProviderConnection,
    is_http_url,
    literal_host_refusal,
)

DEFAULT_TIMEOUT_S = 60.0
MAX_TIMEOUT_S = 600.0
MAX_TEMPERATURE = 2.0
MAX_TOKENS = 1_000_000
OPTIONS = ("max_tokens", "temperature", "timeout_s")


@dataclass(frozen=True)
class Problem:
    field: str  # as the API names it: external_provider, external_config.base_url, ...
    message: str


class Refused(PermanentError):
    """The post-processor asks for something the operator does not allow."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(" ".join(problem.message for problem in problems))
        self.problems = problems


@dataclass(frozen=True)
class Options:
    base_url: str | None = None  # the user's own endpoint; None: the operator's
    timeout_s: float = DEFAULT_TIMEOUT_S
    temperature: float | None = None
    max_tokens: int | None = None


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
            [
                Problem(
                    "external_provider", f"No provider is named {provider!r}; there are: {names}."
                )
            ]
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
    problems += _unknown_fields(config, provider, connection)
    values: dict[str, Any] = {}
    for field, reader in _READERS.items():
        if config.get(field) is None:
            continue
        value = reader(config[field])
        if isinstance(value, Problem):
            problems.append(
                Problem(f"external_config.{field}", f"external_config.{field} {value.message}")
            )
        else:
            values[field] = value
    base_url = values.pop("base_url", None)
    if base_url is not None:
        problems += _base_url_problems(base_url, provider, connection, allowed)
    if problems:
        raise Refused(problems)
    return connection, Options(base_url=base_url, **values)


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


def _unknown_fields(
    config: dict[str, Any], provider: str, connection: ProviderConnection
) -> list[Problem]:
    problems = []
    if "api_key_env" in config:
        # The field that let a user send any of the worker's environment
        # variables anywhere: it is gone, and says where to go instead.
        problems.append(
            Problem(
                "external_config.api_key_env",
                "external_config.api_key_env is not accepted: the operator decides which "
                "key each provider uses. To use a key of your own, store it with "
                f"PUT /api/v1/providers/{provider}/key.",
            )
        )
    settable = {*OPTIONS, "base_url"} if connection.user_base_url else set(OPTIONS)
    unknown = sorted(set(config) - {*OPTIONS, "base_url", "api_key_env"})
    if unknown:
        # Most likely a typo ("timeout"): silently ignoring it would run
        # with a setting the user did not mean.
        problems.append(
            Problem(
                f"external_config.{unknown[0]}",
                f"external_config has unknown field(s) {', '.join(unknown)}; "
                f"it may set {', '.join(sorted(settable))}.",
            )
        )
    return problems


def _base_url_problems(
    base_url: str, provider: str, connection: ProviderConnection, allowed: AllowedHosts
) -> list[Problem]:
    field = "external_config.base_url"
    if not connection.user_base_url:
        return [Problem(field, f"Provider {provider!r} does not take a base_url of your own.")]
    if not is_http_url(base_url):
        return [
            Problem(field, f"external_config.base_url must be an http(s) URL, not {base_url!r}.")
        ]
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


def _base_url(value: Any) -> str | Problem:
    if not isinstance(value, str):
        return Problem("", "must be a string.")
    return value.strip().rstrip("/")


def _number(value: Any, low: float, high: float, low_inclusive: bool = True) -> float | Problem:
    # bool is an int to Python but never a sensible number here.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return Problem("", "must be a number.")
    if value < low or (value == low and not low_inclusive) or value > high:
        lower = "at least" if low_inclusive else "more than"
        return Problem("", f"must be {lower} {low:g} and at most {high:g}.")
    return float(value)


def _whole(value: Any, low: int, high: int) -> int | Problem:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return Problem("", f"must be a whole number from {low} to {high}.")
    return value


_READERS: dict[str, Any] = {
    "base_url": _base_url,
    "timeout_s": lambda value: _number(value, 0, MAX_TIMEOUT_S, low_inclusive=False),
    "temperature": lambda value: _number(value, 0, MAX_TEMPERATURE),
    "max_tokens": lambda value: _whole(value, 1, MAX_TOKENS),
}

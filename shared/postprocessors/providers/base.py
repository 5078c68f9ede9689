"""What every external provider shares: its settings (the post-processor's
`external_config`), the API key, and one HTTP call whose failures become
`TransientError` or `PermanentError` the way the job runner understands them.
"""

from __future__ import annotations

import json
import math
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from shared.postprocessors.base import PermanentError, TransientError

DEFAULT_TIMEOUT_S = 60.0
# Hosts on which an openai-compatible server (vLLM, Ollama, llama.cpp) usually
# runs without a key.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class ProviderSettings:
    """The post-processor's `external_config`, checked."""

    base_url: str
    api_key: str | None = field(repr=False)  # kept out of logs and tracebacks
    timeout_s: float = DEFAULT_TIMEOUT_S
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class Image:
    media_type: str  # one the providers accept: image/png, jpeg, gif or webp
    data: bytes


@dataclass(frozen=True)
class Completion:
    text: str
    model: str  # as the provider names the model that answered
    usage: dict[str, Any] | None = None
    stop_reason: str | None = None  # "length"/"max_tokens": the answer was cut short


class Provider(ABC):
    name: ClassVar[str]
    default_base_url: ClassVar[str]
    default_api_key_env: ClassVar[str]

    def __init__(self, model: str, settings: ProviderSettings) -> None:
        self.model = model
        self.settings = settings

    @abstractmethod
    def complete(self, prompt: str, *, system: str = "", image: Image | None = None) -> Completion:
        """Send one user message (with an image for vision models) and
        return the model's answer."""

    def post(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> Any:
        """POST a JSON body and return the JSON answer, or raise the error
        class the job runner should act on."""
        url = self.settings.base_url + path
        timeout = self.settings.timeout_s
        try:
            # A client per call: the model object lives in a prefork worker
            # and an LLM answer takes far longer than a new connection.
            with httpx.Client(timeout=timeout) as client:
                response = client.post(url, headers=headers, json=body)
        except httpx.TimeoutException as error:
            raise TransientError(
                f"{self.name}: no answer from {url} within {timeout:g} s"
            ) from error
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
            raise PermanentError(f"{self.name}: base_url {url!r} is not usable: {error}") from error
        except httpx.TransportError as error:
            raise TransientError(f"{self.name}: cannot reach {url}: {error}") from error
        if not response.is_success:
            raise _status_error(self.name, response)
        try:
            return response.json()
        except ValueError as error:
            # A 200 that is not JSON is a base_url pointing at something
            # other than the API (a web page, a proxy); a retry won't fix it.
            raise PermanentError(
                f"{self.name}: {url} answered with something other than JSON: "
                f"{_shorten(response.text)!r}"
            ) from error


def unexpected_answer(provider: str, answer: Any) -> PermanentError:
    """A 2xx whose JSON is not the protocol's: the base_url serves another API."""
    return PermanentError(
        f"{provider}: the answer does not follow the protocol: {_shorten(json.dumps(answer))}"
    )


def parse_settings(text: str, provider: type[Provider]) -> ProviderSettings:
    """Read `external_config` (JSON text, every field optional)."""
    try:
        config = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as error:
        raise PermanentError(f"external_config is not valid JSON: {error}") from error
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise PermanentError("external_config must be a JSON object.")
    unknown = sorted(set(config) - _FIELDS)
    if unknown:
        # Most likely a typo ("api_key", "timeout"): silently ignoring it
        # would run with a setting the user did not mean.
        raise PermanentError(
            f"external_config has unknown field(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(_FIELDS))}."
        )
    base_url = _string(config, "base_url", provider.default_base_url).rstrip("/")
    if not _is_http_url(base_url):
        raise PermanentError(f"external_config.base_url must be an http(s) URL, not {base_url!r}.")
    api_key_env = _string(config, "api_key_env", provider.default_api_key_env)
    timeout_s = _number(config, "timeout_s", DEFAULT_TIMEOUT_S, minimum=0, inclusive=False)
    temperature = _optional_number(config, "temperature")
    max_tokens = _positive_int(config, "max_tokens")
    # The key last: a wrong config is reported before a missing variable.
    return ProviderSettings(
        base_url=base_url,
        api_key=_api_key(config, api_key_env, base_url),
        timeout_s=timeout_s,
        temperature=temperature,
        max_tokens=max_tokens,
    )


_FIELDS = frozenset({"base_url", "api_key_env", "timeout_s", "temperature", "max_tokens"})


def _api_key(config: dict[str, Any], env_name: str, base_url: str) -> str | None:
    """The key, read only from the environment. No key is sent when the
    config sets `api_key_env` to "", or when it names no variable and the
    default one is unset for a server on this machine (a local vLLM, Ollama
    or llama.cpp). A variable the config names must be set."""
    if not env_name:
        return None
    key = os.environ.get(env_name, "").strip()
    if key:
        return key
    if "api_key_env" not in config and urlsplit(base_url).hostname in LOCAL_HOSTS:
        return None
    raise PermanentError(
        f"No API key: set the environment variable {env_name} for the worker "
        'or name another one in external_config.api_key_env ("" sends no key).'
    )


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # an unclosed "[" of an IPv6 address, a bad port
        return False


def _string(config: dict[str, Any], field: str, default: str) -> str:
    value = config.get(field, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise PermanentError(f"external_config.{field} must be a string.")
    return value.strip()


def _number(
    config: dict[str, Any], field: str, default: float, minimum: float, inclusive: bool = True
) -> float:
    value = config.get(field)
    if value is None:
        return default
    # bool is an int to Python but never a sensible number here.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PermanentError(f"external_config.{field} must be a number.")
    if value < minimum or (value == minimum and not inclusive):
        relation = "at least" if inclusive else "more than"
        raise PermanentError(f"external_config.{field} must be {relation} {minimum:g}.")
    return float(value)


def _optional_number(config: dict[str, Any], field: str) -> float | None:
    if config.get(field) is None:
        return None
    return _number(config, field, 0.0, minimum=0)


def _positive_int(config: dict[str, Any], field: str) -> int | None:
    value = config.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PermanentError(f"external_config.{field} must be a whole number of at least 1.")
    return value


def _status_error(provider: str, response: httpx.Response) -> TransientError | PermanentError:
    message = (
        f"{provider} answered {response.status_code} {response.reason_phrase}: "
        f"{_provider_message(response)}"
    )
    # 408 is a timeout on the server's side, as transient as one on ours.
    if response.status_code in (408, 429) or response.status_code >= 500:
        return TransientError(message, retry_after=_retry_after(response.headers))
    return PermanentError(message)


def _provider_message(response: httpx.Response) -> str:
    """The error message inside the body: OpenAI and Anthropic both send
    {"error": {"message": ...}}; vLLM and others sometimes a bare string."""
    try:
        body = response.json()
    except ValueError:
        return _shorten(response.text) or "(no message)"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        kind = error.get("type")
        return f"{error['message']} ({kind})" if isinstance(kind, str) else error["message"]
    if isinstance(error, str):
        return error
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return _shorten(response.text)


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait, from `retry-after-ms` (OpenAI) or `Retry-After`
    (seconds or an HTTP date)."""
    milliseconds = _seconds(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def _seconds(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return max(number, 0.0) if math.isfinite(number) else None


def _shorten(text: str, limit: int = 500) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "…"

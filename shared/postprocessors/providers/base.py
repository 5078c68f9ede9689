"""What every protocol's client shares: where its calls go and with which
key, and one HTTP call whose failures become `TransientError` or
`PermanentError` the way the job runner understands them, with messages
that carry no credential and only a short, cleaned excerpt of an answer.
"""

from __future__ import annotations

import json
import math
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx

from shared.postprocessors.base import PermanentError, TransientError
from shared.postprocessors.providers.egress import AddressRefused, guarded_client
from shared.postprocessors.providers.options import Options
from shared.postprocessors.providers.slots import call_slot
from shared.settings import get_settings


@dataclass(frozen=True)
class Endpoint:
    """Where a provider's calls go, and the key they carry."""

    base_url: str
    api_key: str | None = field(repr=False)  # kept out of logs and tracebacks
    # A base_url of the user's own: connections are checked against the
    # operator's allowed addresses, and the key is never the operator's.
    users_own: bool = False


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
    """One protocol's client, for one of the operator's providers."""

    protocol: ClassVar[str]

    def __init__(
        self,
        name: str,
        model: str,
        endpoint: Endpoint,
        options: Options,
        max_concurrency: int | None = None,
    ) -> None:
        self.name = name  # the operator's name for the provider
        self.model = model
        self.endpoint = endpoint
        self.options = options
        self.max_concurrency = max_concurrency

    @abstractmethod
    def complete(self, prompt: str, *, system: str = "", image: Image | None = None) -> Completion:
        """Send one user message (with an image for vision models) and
        return the model's answer."""

    @property
    def where(self) -> str:
        """The provider as messages name it: never the operator's URL, which
        may name internal hosts."""
        return f"{self.name} (your base_url)" if self.endpoint.users_own else self.name

    def post(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> Any:
        """POST a JSON body and return the JSON answer, or raise the error
        class the job runner should act on."""
        settings = get_settings()
        timeout = self.options.timeout_s
        with call_slot(settings.provider_slots_dir, self.name, self.max_concurrency):
            try:
                # A client per call: the model object lives in a prefork
                # worker and an LLM answer takes far longer than a connection.
                with self._client(timeout) as client:
                    response = client.post(
                        self.endpoint.base_url + path, headers=headers, json=body
                    )
            except AddressRefused as error:
                raise PermanentError(f"{self.where}: {error}.") from None
            except httpx.TimeoutException:
                raise TransientError(f"{self.where}: no answer within {timeout:g} s.") from None
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
                raise PermanentError(
                    f"{self.where}: the base_url is not usable: {self.excerpt(str(error))}"
                ) from None
            except httpx.TransportError as error:
                raise TransientError(
                    f"{self.where}: cannot reach the server: "
                    f"{type(error).__name__}: {self.excerpt(str(error))}"
                ) from None
        if not response.is_success:
            raise self._status_error(response)
        try:
            return response.json()
        except ValueError:
            # A 200 that is not JSON is a base_url pointing at something
            # other than the API (a web page, a proxy); a retry won't fix it.
            raise PermanentError(
                f"{self.where} answered with something other than JSON: "
                f"{self.excerpt(response.text)!r}"
            ) from None

    def unexpected_answer(self, answer: Any) -> PermanentError:
        """A 2xx whose JSON is not the protocol's: the base_url serves another API."""
        return PermanentError(
            f"{self.where}: the answer does not follow the protocol: "
            f"{self.excerpt(json.dumps(answer))}"
        )

    def _client(self, timeout: float) -> httpx.Client:
        if self.endpoint.users_own:
            return guarded_client(get_settings().allowed_hosts, timeout)
        # The operator's endpoint: the environment's proxy settings apply.
        return httpx.Client(timeout=timeout, follow_redirects=False)

    def excerpt(self, text: str) -> str:
        """What the provider said, shortened and cleaned for an error."""
        return sanitise(text, self.endpoint.api_key)

    def _status_error(self, response: httpx.Response) -> TransientError | PermanentError:
        message = (
            f"{self.where} answered {response.status_code} {response.reason_phrase}: "
            f"{self.excerpt(_provider_message(response))}"
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
        return response.text.strip() or "(no message)"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        kind = error.get("type")
        return f"{error['message']} ({kind})" if isinstance(kind, str) else error["message"]
    if isinstance(error, str):
        return error
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return response.text


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


# What looks like a credential wherever it appears in an answer: a bearer
# token, or a key in the shape OpenAI and Anthropic give theirs (providers
# echo a key, masked or not, in their "invalid key" messages).
CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)\s+\S+|\b(sk|pk|rk)-[\w*.-]{6,}")
# Masks a provider puts in the middle of a key it echoes: "abcd****wxyz".
MASK = re.compile(r"\*+|…|\.{3,}")
EXCERPT = 200


def sanitise(text: str, key: str | None = None, limit: int = EXCERPT) -> str:
    """A short excerpt of what a provider said, safe for a job's error and
    the logs: without the key sent, in whole or in part, anything shaped
    like a credential, or control characters; at most `limit` characters."""
    if key:
        text = text.replace(key, "[redacted]")
        text = re.sub(r"\S{4,}", lambda word: _unless_key_part(word.group(), key), text)
    text = CREDENTIAL.sub("[redacted]", text)
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[:limit] + "…"


def _unless_key_part(word: str, key: str) -> str:
    """The word, or "[redacted]" when it shows part of the key: six or more
    characters of it, or four on either side of a mask."""
    pieces = [piece.strip("'\"()[]{},;:") for piece in MASK.split(word)]
    shortest = 4 if len(pieces) > 1 else 6
    if any(len(piece) >= shortest and piece in key for piece in pieces):
        return "[redacted]"
    return word

"""What every protocol's client shares: where its calls go and with which
key, and one HTTP call whose failures become `TransientError` or
`PermanentError` the way the job runner understands them, with messages
that carry no credential and only a short, cleaned excerpt of an answer.
"""

from __future__ import annotations

import json
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any, ClassVar

import httpx

from shared.inference import deadline
from shared.inference.base import PermanentError, TransientError
from shared.inference.providers.egress import AddressRefused, guarded_client, tls_context
from shared.inference.providers.options import Options
from shared.inference.providers.slots import call_slot
from shared.redact import sanitise
from shared.settings import get_settings

# An answer larger than this is no chat completion: refused unread, so
# that a server of a user's cannot fill a worker's memory.
MAX_ANSWER_BYTES = 16 * 1024 * 1024


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
        # The operator's limit is for the operator's endpoint: a user's own
        # server neither takes its slots nor waits for them.
        limit = None if self.endpoint.users_own else self.max_concurrency
        with call_slot(get_settings().provider_slots_dir, self.name, limit):
            status, answer_headers, content = self._send(path, headers, body)
        if not 200 <= status < 300:
            raise self._status_error(status, answer_headers, content)
        try:
            return json.loads(content)
        except (ValueError, RecursionError):
            # A 200 that is not JSON is a base_url pointing at something
            # other than the API (a web page, a proxy); a retry won't fix it.
            raise PermanentError(
                f"{self.where} answered with something other than JSON: "
                f"{self.excerpt(content.decode('utf-8', 'replace'))!r}"
            ) from None

    def _send(
        self, path: str, headers: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, httpx.Headers, bytes]:
        # Bounded by the attempt's soft time limit too: in a pool of threads
        # nothing else would end a call that outlives it.
        timeout, by_the_limit = deadline.bounded(self.options.timeout_s)
        try:
            # A client per call: the model object lives in a prefork worker
            # and an LLM answer takes far longer than a new connection.
            with self._client(timeout) as client:
                url = self.endpoint.base_url + path
                with client.stream("POST", url, headers=headers, json=body) as response:
                    content = bytearray()
                    for chunk in response.iter_bytes():
                        # Each read has its timeout; a server that trickles
                        # its answer must not outlive the attempt either.
                        deadline.check()
                        content += chunk
                        if len(content) > MAX_ANSWER_BYTES:
                            raise PermanentError(
                                f"{self.where}: the answer is larger than "
                                f"{MAX_ANSWER_BYTES // 2**20} MiB."
                            )
                    return response.status_code, response.headers, bytes(content)
        except AddressRefused as error:
            raise PermanentError(f"{self.where}: {error}.") from None
        except httpx.TimeoutException:
            if by_the_limit:
                raise deadline.OutOfTime("the soft time limit") from None
            raise TransientError(f"{self.where}: no answer within {timeout:g} s.") from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
            raise PermanentError(
                f"{self.where}: the base_url is not usable: {self._transport_detail(error)}"
            ) from None
        except httpx.TransportError as error:
            raise TransientError(
                f"{self.where}: cannot reach the server: {self._transport_detail(error)}"
            ) from None

    def _transport_detail(self, error: Exception) -> str:
        # About the operator's endpoint, only the kind of failure: its
        # messages can name internal hosts ("certificate is not valid for
        # 'gw.corp'"). About a user's own server, what went wrong.
        if not self.endpoint.users_own:
            return type(error).__name__
        return f"{type(error).__name__}: {self.excerpt(str(error))}"

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
        return httpx.Client(timeout=timeout, follow_redirects=False, verify=tls_context())

    def excerpt(self, text: str) -> str:
        """What the provider said, shortened and cleaned for an error."""
        return sanitise(text, self.endpoint.api_key)

    def _status_error(
        self, status: int, headers: httpx.Headers, content: bytes
    ) -> TransientError | PermanentError:
        # The status's own phrase, not the one the server sent: that is
        # free text of the server's choosing.
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "(an unknown status)"
        message = (
            f"{self.where} answered {status} {phrase}: {self.excerpt(_provider_message(content))}"
        )
        # 408 is a timeout on the server's side, as transient as one on ours.
        if status in (408, 429) or status >= 500:
            return TransientError(message, retry_after=_retry_after(headers))
        return PermanentError(message)


def _provider_message(content: bytes) -> str:
    """The error message inside the body: OpenAI and Anthropic both send
    {"error": {"message": ...}}; vLLM and others sometimes a bare string."""
    text = content.decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return text.strip() or "(no message)"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        kind = error.get("type")
        return f"{error['message']} ({kind})" if isinstance(kind, str) else error["message"]
    if isinstance(error, str):
        return error
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return text


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

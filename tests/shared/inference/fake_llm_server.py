"""A local HTTP server that speaks the OpenAI Chat Completions and the
Anthropic Messages protocols, for the provider and LLM model tests."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shared.inference.base import PostProcessorConfig
from shared.inference.providers import Provider, connect
from shared.secret_box import seal


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # sent as JSON, or as is when a str
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Request:
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out leaves its handler writing to a closed socket


class FakeProvider:
    """An HTTP server on 127.0.0.1 (or `host`) that records each request and
    answers with the next scripted reply, then with `default` once they run
    out."""

    def __init__(self, default: Reply, host: str = "127.0.0.1") -> None:
        self.default = default
        self.replies: deque[Reply] = deque()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = _QuietServer((host, 0), self._handler())
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> FakeProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def last(self) -> Request:
        return self.requests[-1]

    def _next(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            return self.replies.popleft() if self.replies else self.default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"null")
                headers = {name.lower(): value for name, value in self.headers.items()}
                reply = fake._next(Request(self.path, headers, body))
                time.sleep(reply.delay)
                payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                self.send_response(reply.status)
                content_type = "text/html" if isinstance(reply.body, str) else "application/json"
                self.send_header("content-type", content_type)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload.encode())))
                self.end_headers()
                self.wfile.write(payload.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def openai_answer(text: str, finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-test-2024",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }


def anthropic_answer(text: str, stop_reason: str = "end_turn") -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason,
        "usage": {"input_tokens": 12, "output_tokens": 3},
    }


ANSWERS = {"openai": openai_answer, "anthropic": anthropic_answer}
# Where each protocol's base_url points on the fake server.
BASE_PATHS = {"openai": "/v1", "anthropic": ""}
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}
ERROR_BODIES: dict[str, dict[str, Any]] = {
    "openai": {"error": {"message": "Invalid model 'nope'", "type": "invalid_request_error"}},
    "anthropic": {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "model: nope not found"},
    },
}


def processor(
    provider: str | None, model: str = "test-model", user_key: str | None = None, **config: Any
) -> PostProcessorConfig:
    """A post-processor's settings; `user_key` is its owner's stored key,
    in the clear (sealed here as the database holds it)."""
    return PostProcessorConfig(
        id=uuid.uuid4(),
        name="p",
        model_type="llm",
        external_provider=provider,
        external_model=model,
        external_config=json.dumps(config),
        user_key=seal(user_key) if user_key is not None else None,
    )


def client(provider: str, fake: FakeProvider, **config: Any) -> Provider:
    """The provider client for a post-processor whose own base_url is `fake`."""
    return connect(processor(provider, base_url=fake.url + BASE_PATHS[provider], **config))

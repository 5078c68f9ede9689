"""The Anthropic Messages API."""

from __future__ import annotations

import base64
from typing import Any

from shared.inference.base import PermanentError
from shared.inference.providers.base import Completion, Image, Provider

API_VERSION = "2023-06-01"
# The API requires max_tokens; this is enough for a summary or an entity list.
DEFAULT_MAX_TOKENS = 1024


class AnthropicProvider(Provider):
    protocol = "anthropic"

    def complete(self, prompt: str, *, system: str = "", image: Image | None = None) -> Completion:
        content: list[dict[str, Any]] = []
        if image is not None:
            # Anthropic advises the image before the question about it.
            content.append(
                {
                    "type": "image",
                    "source": {
                        "type": "base64",
                        "media_type": image.media_type,
                        "data": base64.b64encode(image.data).decode("ascii"),
                    },
                }
            )
        content.append({"type": "text", "text": prompt})
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.options.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": [{"role": "user", "content": content}],
        }
        if system:
            body["system"] = system
        if self.options.temperature is not None:
            body["temperature"] = self.options.temperature
        headers = {"anthropic-version": API_VERSION}
        if self.endpoint.api_key:
            headers["x-api-key"] = self.endpoint.api_key
        return self._completion(self.post("/v1/messages", headers, body))

    def _completion(self, answer: Any) -> Completion:
        if not isinstance(answer, dict) or not isinstance(answer.get("content"), list):
            raise self.unexpected_answer(answer)
        if answer.get("stop_reason") == "refusal":
            raise PermanentError(f"{self.where}: the model refused to answer.")
        text = "".join(
            block["text"]
            for block in answer["content"]
            if isinstance(block, dict)
            and block.get("type") == "text"
            and isinstance(block.get("text"), str)
        )
        return Completion(
            text=text,
            model=str(answer.get("model") or self.model),
            usage=answer.get("usage") if isinstance(answer.get("usage"), dict) else None,
            stop_reason=answer.get("stop_reason"),
        )

"""The OpenAI Chat Completions protocol, also spoken by vLLM, Ollama and
llama.cpp servers (point `base_url` at their `/v1`)."""

from __future__ import annotations

import base64
from typing import Any

from shared.inference.base import PermanentError
from shared.inference.providers.base import Completion, Image, Provider


class OpenAIProvider(Provider):
    protocol = "openai"

    def complete(self, prompt: str, *, system: str = "", image: Image | None = None) -> Completion:
        content: str | list[dict[str, Any]] = prompt
        if image is not None:
            data = base64.b64encode(image.data).decode("ascii")
            content = [
                {"type": "text", "text": prompt},
                {
                    "type": "image_url",
                    "image_url": {"url": f"data:{image.media_type};base64,{data}"},
                },
            ]
        messages: list[dict[str, Any]] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": content})
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if self.options.temperature is not None:
            body["temperature"] = self.options.temperature
        if self.options.max_tokens is not None:
            body["max_tokens"] = self.options.max_tokens
        headers = {}
        if self.endpoint.api_key:
            headers["Authorization"] = f"Bearer {self.endpoint.api_key}"
        return self._completion(self.post("/chat/completions", headers, body))

    def _completion(self, answer: Any) -> Completion:
        try:
            choice = answer["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError):
            raise self.unexpected_answer(answer) from None
        if not isinstance(message, dict):
            raise self.unexpected_answer(answer)
        if message.get("refusal"):
            # Written into the item's text a refusal would pass for an answer.
            raise PermanentError(
                f"{self.where}: the model refused: {self.excerpt(str(message['refusal']))}"
            )
        return Completion(
            text=_text(message.get("content")),
            model=str(answer.get("model") or self.model),
            usage=answer.get("usage") if isinstance(answer.get("usage"), dict) else None,
            stop_reason=choice.get("finish_reason"),
        )


def _text(content: Any) -> str:
    """The message content: a string, or (from some compatible servers) a
    list of parts whose text parts make the answer."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    return ""

"""External LLM providers, chosen by a post-processor's `external_provider`
and configured by its `external_config` (JSON: base_url, api_key_env,
timeout_s, temperature, max_tokens; every field optional).

Keys are read only from the environment variable that `api_key_env` names
(OPENAI_API_KEY or ANTHROPIC_API_KEY by default), never from the database.
`"api_key_env": ""` sends no key, and so does an unset default variable when
`base_url` is on this machine (localhost, 127.0.0.1, ::1), for local vLLM,
Ollama and llama.cpp servers.
"""

from __future__ import annotations

from shared.postprocessors.base import PermanentError, PostProcessorConfig
from shared.postprocessors.providers.anthropic import AnthropicProvider
from shared.postprocessors.providers.base import Completion, Image, Provider, parse_settings
from shared.postprocessors.providers.openai import OpenAIProvider

PROVIDERS: dict[str, type[Provider]] = {
    provider.name: provider for provider in (OpenAIProvider, AnthropicProvider)
}

__all__ = ["PROVIDERS", "Completion", "Image", "Provider", "connect"]


def connect(config: PostProcessorConfig) -> Provider:
    """The provider a post-processor names, with its settings checked."""
    if not config.external_provider:
        raise PermanentError(
            f"A {config.model_type!r} post-processor needs external_provider "
            f"({' or '.join(PROVIDERS)}) and external_model."
        )
    provider = PROVIDERS.get(config.external_provider)
    if provider is None:
        raise PermanentError(
            f"Unknown external_provider {config.external_provider!r}; use {' or '.join(PROVIDERS)}."
        )
    if not config.external_model.strip():
        raise PermanentError(
            f"external_model is empty: name the {provider.name} model to ask "
            "(for a local server, the model it serves)."
        )
    return provider(config.external_model.strip(), parse_settings(config.external_config, provider))

"""External LLM providers: the operator's, named by a post-processor's
`external_provider`, spoken to in their protocol (OpenAI Chat Completions
or Anthropic Messages).

Which key a call carries is never the post-processor's to say. On the
operator's endpoint it carries the user's own stored key for that provider
if there is one, else the operator's (from the variable the operator named);
on a base_url of the user's own, only the user's own key, or none.
"""

from __future__ import annotations

import os

from shared.inference.base import PermanentError, PostProcessorConfig
from shared.inference.providers.anthropic import AnthropicProvider
from shared.inference.providers.base import Completion, Endpoint, Image, Provider
from shared.inference.providers.openai import OpenAIProvider
from shared.inference.providers.options import check
from shared.provider_config import ProviderConnection
from shared.secret_box import SecretKeyMissing, SecretUnreadable, unseal
from shared.settings import get_settings

PROTOCOLS: dict[str, type[Provider]] = {
    provider.protocol: provider for provider in (OpenAIProvider, AnthropicProvider)
}

__all__ = ["PROTOCOLS", "Completion", "Image", "Provider", "connect"]


def connect(config: PostProcessorConfig) -> Provider:
    """The client for the provider a post-processor names, with its options
    checked and the key it may use."""
    settings = get_settings()
    name = config.external_provider
    if not name:
        names = " or ".join(sorted(settings.provider_connections))
        raise PermanentError(
            f"A {config.model_type!r} post-processor needs external_provider "
            f"({names}) and external_model."
        )
    connection, options = check(
        name,
        config.external_model,
        config.external_config,
        settings.provider_connections,
        settings.allowed_hosts,
    )
    model = config.external_model.strip()
    if not model:
        raise PermanentError(
            f"external_model is empty: name the model to ask of provider {name!r} "
            "(for a server of your own, the model it serves)."
        )
    users_key = _users_key(name, config.user_key)
    if options.base_url is not None:
        endpoint = Endpoint(options.base_url, users_key, users_own=True)
    else:
        endpoint = Endpoint(connection.base_url, users_key or _operators_key(name, connection))
    return PROTOCOLS[connection.protocol](
        name, model, endpoint, options, connection.max_concurrency
    )


def _users_key(name: str, sealed: str | None) -> str | None:
    if sealed is None:
        return None
    try:
        return unseal(sealed)
    except (SecretKeyMissing, SecretUnreadable) as error:
        raise PermanentError(
            f"Your stored key for provider {name!r} cannot be used: {error}. The operator "
            "must give the API and every worker the same SECRETS_KEY; or store the key again."
        ) from None


def _operators_key(name: str, connection: ProviderConnection) -> str | None:
    if not connection.api_key_env:
        return None  # an endpoint that needs no key
    key = os.environ.get(connection.api_key_env, "").strip()
    if not key:
        raise PermanentError(
            f"No API key for provider {name!r}: the workers have none "
            f"({connection.api_key_env} is not set) and you have stored none of your own "
            f"(PUT /api/v1/providers/{name}/key)."
        )
    return key

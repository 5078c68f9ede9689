"""Which model serves a post-processor, chosen by `model_type` and `model_id`.

Models come from the `itemflow.post_processors` entry points of every
installed package, and from the POST_PROCESSORS setting ("module:Class,...")
for models that are not packaged. Two models claiming the same type and id
is a configuration error, reported at start-up rather than resolved by
import order.

Some models are data rather than classes: ONNX networks an operator
registered are rows in a table. Those come from providers, callables
`(model_type, model_id) -> model or None` named by the same entry points
and setting. A provider is asked only when no class serves the key, so it
can never shadow a packaged model; it loads and caches its models itself.
When no provider answers either, the post-processor gets a MissingModel.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from shared.errors import AppError
from shared.postprocessors.base import (
    ItemInput,
    ModelOutput,
    PermanentError,
    PostProcessorConfig,
    PostProcessorModel,
)

ENTRY_POINT_GROUP = "itemflow.post_processors"
# Serves (model_type, model_id) keys no class claims; None: not mine.
ModelProvider = Callable[[str, str], PostProcessorModel | None]
log = logging.getLogger(__name__)


class DuplicateModel(AppError):
    """Two post-processor models claim the same model_type and model_id."""


class MissingModel(PostProcessorModel):
    """Stands in for a model type that has no installed model: every job
    fails at once with a message that says what is missing."""

    kind = "missing"

    def __init__(self, model_type: str, model_id: str, installed: list[str]) -> None:
        self.model_type = model_type  # type: ignore[misc]
        self.model_id = model_id  # type: ignore[misc]
        self.name = "none"  # type: ignore[misc]
        self.installed = installed

    def run(self, item: ItemInput, file: Path | None, config: PostProcessorConfig) -> ModelOutput:
        wanted = f"model_type {self.model_type!r}"
        if self.model_id:
            wanted += f" with model_id {self.model_id!r}"
        raise PermanentError(
            f"No model is installed for {wanted}. Installed: {', '.join(self.installed) or 'none'}."
        )


class Registry:
    def __init__(self) -> None:
        self._classes: dict[tuple[str, str], type[PostProcessorModel]] = {}
        self._instances: dict[tuple[str, str], PostProcessorModel] = {}
        self._providers: list[ModelProvider] = []
        self._lock = threading.Lock()

    def add(self, plugin: Any) -> None:
        """Register what an entry point or the setting names: a model class,
        or a provider function."""
        if isinstance(plugin, type) and issubclass(plugin, PostProcessorModel):
            self.register(plugin)
        elif callable(plugin) and not isinstance(plugin, type):
            self.add_provider(plugin)
        else:
            raise TypeError(f"{plugin!r} is neither a post-processor model class nor a provider")

    def add_provider(self, provider: ModelProvider) -> ModelProvider:
        if provider not in self._providers:
            self._providers.append(provider)
        return provider

    def register(self, model_class: type[PostProcessorModel]) -> type[PostProcessorModel]:
        key = (model_class.model_type, model_class.model_id)
        existing = self._classes.get(key)
        if existing is not None and existing is not model_class:
            raise DuplicateModel(
                f"{model_class.__module__}.{model_class.__qualname__} and "
                f"{existing.__module__}.{existing.__qualname__} both serve {key}"
            )
        self._classes[key] = model_class
        return model_class

    def model_class(self, model_type: str, model_id: str = "") -> type[PostProcessorModel] | None:
        """The model serving exactly this type and id. An unknown id does not
        fall back to the type's default: running another model than the one
        asked for, under its name, would be worse than failing."""
        return self._classes.get((model_type, model_id))

    def get(self, model_type: str, model_id: str = "") -> PostProcessorModel:
        """The model instance for a post-processor, built on first use and
        kept for the life of the process."""
        model_class = self.model_class(model_type, model_id)
        if model_class is None:
            for provider in self._providers:
                model = provider(model_type, model_id)
                if model is not None:
                    return model
            return MissingModel(model_type, model_id, self.installed())
        key = (model_class.model_type, model_class.model_id)
        with self._lock:
            if key not in self._instances:
                log.info("loading model %s for %s", model_class.name, key)
                self._instances[key] = model_class()
            return self._instances[key]

    def installed(self) -> list[str]:
        return sorted(
            f"{model_type}/{model_id}" if model_id else model_type
            for model_type, model_id in self._classes
        )

    def warm_up(self) -> None:
        """Build every registered model now, so that the first job a
        process runs does not wait for a model to load."""
        for model_type, model_id in list(self._classes):
            self.get(model_type, model_id)


def load_registry(extra: str = "") -> Registry:
    registry = Registry()
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        registry.add(entry_point.load())
    for spec in filter(None, (part.strip() for part in extra.split(","))):
        module_name, _, class_name = spec.partition(":")
        registry.add(getattr(importlib.import_module(module_name), class_name))
    return registry


_registry: Registry | None = None


def get_registry() -> Registry:
    global _registry
    if _registry is None:
        from shared.settings import get_settings

        _registry = load_registry(get_settings().post_processors)
    return _registry

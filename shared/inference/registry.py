"""Which model serves a post-processor, chosen by `model_type` and `model_id`.

Models come from the `itemflow.post_processors` entry points of every
installed package, and from the POST_PROCESSORS setting ("module:Class,...")
for models that are not packaged. Two models claiming the same type and id
is a configuration error, reported at start-up rather than resolved by
import order.

Some models are data rather than classes: ONNX networks an operator
registered are rows in a table. The caller reads the row (a job's claim
does) and hands its `ModelSpec` over; the registry reads no database. A
spec is used only when no class serves the key, so a registered model can
never shadow a packaged one. When neither serves it, the post-processor
gets a MissingModel.
"""

from __future__ import annotations

import importlib
import logging
import threading
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from shared.errors import AppError
from shared.inference.base import (
    ItemInput,
    ModelOutput,
    PermanentError,
    PostProcessorConfig,
    PostProcessorModel,
)
from shared.inference.registered_onnx import ModelSpec, RegisteredOnnx

ENTRY_POINT_GROUP = "itemflow.post_processors"
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
        self._lock = threading.Lock()

    def add(self, plugin: Any) -> None:
        """Register what an entry point or the setting names."""
        if not (isinstance(plugin, type) and issubclass(plugin, PostProcessorModel)):
            raise TypeError(f"{plugin!r} is not a post-processor model class")
        self.register(plugin)

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

    def calls_out(self, model_type: str, model_id: str = "") -> bool:
        """Whether the model serving this type and id calls an external
        provider: its jobs wait on the network, not on a core."""
        model_class = self.model_class(model_type, model_id)
        return model_class is not None and model_class.kind == "external"

    def get(
        self, model_type: str, model_id: str = "", registered: ModelSpec | None = None
    ) -> PostProcessorModel:
        """The model instance for a post-processor, built on first use and
        kept for the life of the process. `registered` is the registered
        model the post-processor names, if there is one."""
        model_class = self.model_class(model_type, model_id)
        if model_class is None:
            if registered is not None:
                return RegisteredOnnx.for_spec(registered)
            # Unregistered since this process loaded it: free its memory.
            RegisteredOnnx.forget(model_id)
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

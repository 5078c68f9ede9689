"""The interface every post-processor model implements.

A model is a class with `run(item, file, config) -> ModelOutput`. It is built
once per worker process and reused for every job, so load weights in
`__init__`. It says what went wrong by raising `PermanentError` (the input
will never work: fail the job now) or `TransientError` (try again later).
Any other exception counts as transient.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from shared.errors import AppError


class PostProcessorError(AppError):
    """A post-processor could not produce a result."""


class PermanentError(PostProcessorError):
    """The input can never be processed by this model; retrying will not help."""


class TransientError(PostProcessorError):
    """The model could not run this time (a timeout, a busy service); retry later."""

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        # Seconds the service asked us to wait (its Retry-After header); the
        # job's back-off should be at least this long. None: no preference.
        self.retry_after = retry_after


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float = 1.0
    # A region: {"x","y","width","height"} in pixels or {"start","end"} in
    # characters. None labels the whole item.
    coordinates: dict[str, Any] | None = None


@dataclass
class ModelOutput:
    raw: Any  # JSON-serialisable; kept whole in the job's `result`
    text: str | None = None
    predictions: list[Prediction] = field(default_factory=list)


@dataclass(frozen=True)
class ItemInput:
    id: uuid.UUID
    name: str
    description: str
    text: str
    extension: str
    media_type: str
    label_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class PostProcessorConfig:
    id: uuid.UUID
    name: str
    model_type: str
    model_id: str = ""
    model_version: str = ""
    external_provider: str | None = None
    external_model: str = ""
    external_config: str = ""
    prompt: str = ""
    output_target: str = "text"
    auto_create_labels: bool = False
    confidence_threshold: float = 0.0
    # The post-processor's owner's own key for its external provider, as
    # stored: encrypted, and opened only by the provider client that sends it.
    user_key: str | None = field(default=None, repr=False)


class PostProcessorModel(ABC):
    model_type: ClassVar[str]
    # Empty: the default model for its type. Otherwise it serves only
    # post-processors whose `model_id` names it.
    model_id: ClassVar[str] = ""
    name: ClassVar[str]
    kind: ClassVar[str] = "builtin"

    @abstractmethod
    def run(self, item: ItemInput, file: Path | None, config: PostProcessorConfig) -> ModelOutput:
        """Process one item and return what the model made of it."""

"""The `llm` model: the post-processor's prompt, filled with the item's
fields, sent to an external provider; the answer becomes the item's text.

The prompt may name `{name}`, `{description}`, `{text}`, `{extension}` and
`{labels}` (the version's label names, comma-separated). Only these exact
placeholders are replaced, in one pass, so any other braces - a JSON example
in the prompt, or braces in the item's own text - are sent as written. An
image item's picture goes along with the prompt for vision models.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from PIL import Image as PillowImage
from PIL import UnidentifiedImageError

from shared.inference.base import (
    ItemInput,
    ModelOutput,
    PermanentError,
    PostProcessorConfig,
    PostProcessorModel,
    TransientError,
)
from shared.inference.files.text import item_text
from shared.inference.providers import Completion, Image, Provider, connect

PLACEHOLDER = re.compile(r"\{(name|description|text|extension|labels)\}")
# What both providers accept as is; other kinds are re-encoded as PNG.
SENDABLE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# Anthropic refuses images over 5 MB of base64, that is 3.75 MB of bytes.
MAX_IMAGE_BYTES = 3_750_000
# Larger images are scaled down by the providers anyway.
MAX_IMAGE_EDGE = 2048


class LlmModel(PostProcessorModel):
    model_type = "llm"
    name = "external-llm"
    kind = "external"

    def run(self, item: ItemInput, file: Path | None, config: PostProcessorConfig) -> ModelOutput:
        provider = connect(config)
        if not config.prompt.strip():
            raise PermanentError(
                "An llm post-processor needs a prompt, for example "
                "'Summarise in one sentence: {text}'."
            )
        image = None
        if item.media_type.startswith("image/"):
            if file is None:
                raise PermanentError("The image item has no file to send to the model.")
            image = load_image(file, item.media_type)
        text, _source = item_text(item, file)
        completion = provider.complete(fill_prompt(config.prompt, item, text), image=image)
        if not completion.text.strip():
            raise empty_answer(provider, completion)
        return ModelOutput(raw=raw_output(provider, completion), text=completion.text)


def fill_prompt(template: str, item: ItemInput, text: str | None = None) -> str:
    """The template with the item's fields filled in; `text` stands for the
    item's text when given (a text item's file, say)."""
    fields = {
        "name": item.name,
        "description": item.description,
        "text": item.text if text is None else text,
        "extension": item.extension,
        "labels": ", ".join(item.label_names),
    }
    return PLACEHOLDER.sub(lambda match: fields[match.group(1)], template)


def raw_output(provider: Provider, completion: Completion, **extra: Any) -> dict[str, Any]:
    """What the job keeps as its `result`."""
    raw: dict[str, Any] = {
        "provider": provider.name,
        "model": completion.model,
        "answer": completion.text,
    }
    if completion.usage is not None:
        raw["usage"] = completion.usage
    if completion.stop_reason is not None:
        raw["stop_reason"] = completion.stop_reason
    return raw | extra


def empty_answer(provider: Provider, completion: Completion) -> PermanentError | TransientError:
    if completion.stop_reason in ("length", "max_tokens"):
        # Reasoning models can spend the whole budget before writing.
        return PermanentError(
            f"{provider.where}: the answer was cut off before any text; "
            "raise max_tokens in external_config."
        )
    return TransientError(f"{provider.where}: the model gave an empty answer.")


def load_image(file: Path, media_type: str) -> Image:
    """The item's image as the providers take it: the file itself when they
    accept its kind and size, else re-encoded smaller as PNG or JPEG."""
    data = file.read_bytes()
    if media_type in SENDABLE_IMAGES and len(data) <= MAX_IMAGE_BYTES:
        return Image(media_type, data)
    try:
        with PillowImage.open(file) as picture:
            picture.load()
            picture.thumbnail((MAX_IMAGE_EDGE, MAX_IMAGE_EDGE))
            buffer = io.BytesIO()
            if picture.mode in ("RGB", "L", "CMYK", "YCbCr"):
                picture.convert("RGB").save(buffer, format="JPEG", quality=90)
                return Image("image/jpeg", buffer.getvalue())
            picture.convert("RGBA").save(buffer, format="PNG")
            return Image("image/png", buffer.getvalue())
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise PermanentError(f"The image cannot be read: {error}") from error
    except PillowImage.DecompressionBombError as error:
        raise PermanentError(f"The image is too large to process: {error}") from error

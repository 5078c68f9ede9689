"""OCR on images with RapidOCR, whose wheel carries its ONNX models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from shared.postprocessors.base import (
    ItemInput,
    ModelOutput,
    PermanentError,
    PostProcessorConfig,
    PostProcessorModel,
)


class RapidOcr(PostProcessorModel):
    model_type = "ocr"
    name = "rapidocr-onnxruntime"

    def __init__(self) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self.engine = RapidOCR()

    def run(self, item: ItemInput, file: Path | None, config: PostProcessorConfig) -> ModelOutput:
        if file is None:
            raise PermanentError("The item has no file to read text from.")
        # The kind detected from the bytes at upload, not the client-editable
        # extension.
        if not item.media_type.startswith("image/"):
            raise PermanentError(f"OCR reads images; this item's file is {item.media_type!r}.")
        image = _load_image(file)
        found, _timings = self.engine(image)
        lines = [_line(box, text, score) for box, text, score in found or []]
        return ModelOutput(
            raw={"model": self.name, "lines": lines},
            text="\n".join(line["text"] for line in lines),
        )


def _load_image(file: Path) -> Any:
    import numpy

    try:
        with Image.open(file) as image:
            image.load()
            return numpy.asarray(image.convert("RGB"))[:, :, ::-1]  # RapidOCR wants BGR
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise PermanentError(f"The image cannot be read: {error}") from error
    except Image.DecompressionBombError as error:
        raise PermanentError(f"The image is too large to process: {error}") from error


def _line(box: Any, text: str, score: float) -> dict[str, Any]:
    return {
        "text": text,
        "score": round(float(score), 4),
        "box": [[round(float(x), 1), round(float(y), 1)] for x, y in box],
    }

"""ONNX networks an operator registered with `itemflow models add`, run by
onnxruntime on the CPU. A post-processor of model_type `classification` or
`detection` names one in its `model_id`.

Registered models are rows (the `onnx_models` table), not classes: the
claim of a job reads its model's row into a `ModelSpec`, and the registry
builds the model from that. Nothing here reads the database. A worker
process loads each model once and keeps it; when the row's sha256 changes
(`itemflow models add NAME --replace ...`) the next job loads the new file.

Conventions a model must follow:

- Input: one float32 tensor, NCHW, batch 1, 3 channels. The image is shown
  upright (EXIF orientation applied), converted to RGB, resized to the
  registered input size (bilinear, aspect ratio not kept) and scaled to
  [0, 1]. No mean/std normalisation: a model that wants it carries it as
  its first nodes.
- Classification output: the first output, one score per label ([1, K] or
  [K]), in the order of the registered labels. Values that are not already a
  distribution (non-negative, summing to 1) are taken as logits and
  softmaxed; so a multi-label model with independent sigmoids is scored as
  if its classes excluded each other. Every label becomes a prediction with
  its score; the item's text is the top label.
- Detection output: the first output, [N, 6] or [1, N, 6], rows of
  (x1, y1, x2, y2, score, class index) in pixels of the model's input. Boxes
  are scaled back to the original image, clipped to it, and given as
  {"x", "y", "width", "height"} ints; a box left with no area is dropped. A
  class index outside the labels fails the job (the labels do not fit the
  model). A detector writes no text.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy
from PIL import Image

from shared.inference.base import (
    ItemInput,
    ModelOutput,
    PermanentError,
    PostProcessorConfig,
    PostProcessorModel,
    Prediction,
    TransientError,
)
from shared.inference.files.images import open_upright

KINDS = ("classification", "detection")
# How far from 1 a sum of probabilities may be, for float32 rounding.
DISTRIBUTION_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ModelSpec:
    """What a worker needs of a registered model's row."""

    name: str
    kind: str
    labels: tuple[str, ...]
    file_key: str
    sha256: str
    input_width: int
    input_height: int

    @classmethod
    def from_row(cls, row: Any) -> ModelSpec:
        return cls(
            name=row.name,
            kind=row.kind,
            labels=tuple(json.loads(row.labels)),
            file_key=row.file_key,
            sha256=row.sha256,
            input_width=row.input_width,
            input_height=row.input_height,
        )


def open_session(model_bytes: bytes) -> Any:
    """An onnxruntime session for a model held in memory."""
    import onnxruntime

    return onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


def score_vector(output: Any) -> Any:
    """The classification output as one vector of scores; ValueError when it
    is not one."""
    scores = numpy.asarray(output, dtype=numpy.float64)
    if scores.ndim == 2 and scores.shape[0] == 1:
        scores = scores[0]
    if scores.ndim != 1:
        raise ValueError(f"a classifier must output one vector of scores, not {scores.shape}")
    if not numpy.isfinite(scores).all():
        raise ValueError("the scores are not all finite numbers")
    return scores


def box_rows(output: Any) -> Any:
    """The detection output as [N, 6] rows; ValueError when it is not."""
    rows = numpy.asarray(output, dtype=numpy.float64)
    if rows.ndim == 3 and rows.shape[0] == 1:
        rows = rows[0]
    if rows.ndim != 2 or rows.shape[1] != 6:
        raise ValueError(
            f"a detector must output [N, 6] rows (x1, y1, x2, y2, score, class), not {rows.shape}"
        )
    if not numpy.isfinite(rows).all():
        raise ValueError("the boxes are not all finite numbers")
    return rows


def as_distribution(scores: Any) -> Any:
    total = float(scores.sum())
    if scores.min() >= 0 and abs(total - 1) <= DISTRIBUTION_TOLERANCE:
        return scores
    exponentials = numpy.exp(scores - scores.max())
    return exponentials / exponentials.sum()


class RegisteredOnnx(PostProcessorModel):
    """A registered model, loaded. One instance per model name per process,
    replaced when the registered file changes."""

    kind = "onnx"
    _loaded: ClassVar[dict[str, RegisteredOnnx]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, spec: ModelSpec, model_bytes: bytes) -> None:
        self.model_type = spec.kind  # type: ignore[misc]
        self.model_id = spec.name  # type: ignore[misc]
        self.name = spec.name  # type: ignore[misc]
        self.spec = spec
        self.session = open_session(model_bytes)
        self.input_name = self.session.get_inputs()[0].name

    @classmethod
    def for_spec(cls, spec: ModelSpec) -> RegisteredOnnx:
        with cls._lock:
            model = cls._loaded.get(spec.name)
            if model is None or model.spec != spec:
                model = cls(spec, _read_model_file(spec))
                cls._loaded[spec.name] = model
            return model

    @classmethod
    def forget(cls, name: str) -> None:
        with cls._lock:
            cls._loaded.pop(name, None)

    def run(self, item: ItemInput, file: Path | None, config: PostProcessorConfig) -> ModelOutput:
        if file is None:
            raise PermanentError(f"The item has no file for the ONNX model {self.name!r}.")
        # The kind detected from the bytes at upload, not the client-editable
        # extension.
        if not item.media_type.startswith("image/"):
            raise PermanentError(
                f"The ONNX model {self.name!r} reads images; this file is {item.media_type!r}."
            )
        pixels, width, height = load_input(file, self.spec.input_width, self.spec.input_height)
        output = self.session.run(None, {self.input_name: pixels})[0]
        try:
            if self.spec.kind == "classification":
                return self._classify(score_vector(output))
            return self._detect(box_rows(output), width, height)
        except ValueError as error:
            raise PermanentError(
                f"The ONNX model {self.name!r} gave no usable output: {error}"
            ) from error

    def _classify(self, scores: Any) -> ModelOutput:
        labels = self.spec.labels
        if len(scores) != len(labels):
            raise ValueError(f"{len(scores)} scores for {len(labels)} labels")
        probabilities = as_distribution(scores)
        ranked = sorted(
            zip(labels, (round(float(p), 4) for p in probabilities), strict=True),
            key=lambda pair: -pair[1],
        )
        return ModelOutput(
            raw={"model": self.name, "sha256": self.spec.sha256, "scores": dict(ranked)},
            text=ranked[0][0],
            predictions=[Prediction(label=label, score=score) for label, score in ranked],
        )

    def _detect(self, rows: Any, width: int, height: int) -> ModelOutput:
        scale_x = width / self.spec.input_width
        scale_y = height / self.spec.input_height
        boxes = []
        for x1, y1, x2, y2, score, index in rows.tolist():
            if not (index.is_integer() and 0 <= index < len(self.spec.labels)):
                raise ValueError(f"class {index:g} has no label ({len(self.spec.labels)} labels)")
            left = min(max(round(x1 * scale_x), 0), width)
            top = min(max(round(y1 * scale_y), 0), height)
            right = min(max(round(x2 * scale_x), 0), width)
            bottom = min(max(round(y2 * scale_y), 0), height)
            if right > left and bottom > top:
                box = {"x": left, "y": top, "width": right - left, "height": bottom - top}
                label = self.spec.labels[int(index)]
                boxes.append({"label": label, "score": round(score, 4), **box})
        boxes.sort(key=lambda box: (-box["score"], box["y"], box["x"]))
        return ModelOutput(
            raw={
                "model": self.name,
                "sha256": self.spec.sha256,
                "image": {"width": width, "height": height},
                "boxes": boxes,
            },
            text=None,
            predictions=[
                Prediction(
                    label=box["label"],
                    score=box["score"],
                    coordinates={key: box[key] for key in ("x", "y", "width", "height")},
                )
                for box in boxes
            ],
        )


def _read_model_file(spec: ModelSpec) -> bytes:
    from shared.storage import get_storage

    try:
        with get_storage().local_path(spec.file_key) as path:
            model_bytes = path.read_bytes()
    except FileNotFoundError as error:
        # Transient: a model replaced (`models add --replace`) after this job
        # was claimed loses its old file; the next attempt's claim reads the
        # new one. A file gone for good fails the job once attempts run out.
        raise TransientError(
            f"The file of the registered model {spec.name!r} is missing from storage "
            "(replaced or removed since the job was claimed?)."
        ) from error
    if hashlib.sha256(model_bytes).hexdigest() != spec.sha256:
        raise PermanentError(
            f"The file of the registered model {spec.name!r} changed after it was registered; "
            "register it again."
        )
    return model_bytes


def load_input(file: Path, input_width: int, input_height: int) -> tuple[Any, int, int]:
    """The image as the model's input tensor, with its own width and height."""
    upright = open_upright(file, "RGB")
    resized = upright.resize((input_width, input_height), Image.Resampling.BILINEAR)
    pixels = numpy.asarray(resized, dtype=numpy.float32) / 255.0
    return pixels.transpose(2, 0, 1)[numpy.newaxis], upright.width, upright.height

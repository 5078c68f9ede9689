"""Registering ONNX models: check a network and its labels, keep its file in
storage, and record it in `onnx_models` for workers to find by name.

A model is checked the way a worker will use it (see
shared.inference.registered_onnx for the conventions): onnxruntime must
load it, it must take one NCHW float32 image, and a trial run on a blank
image must give output of the registered kind (for a classifier, one score
per label).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.errors import AppError, Conflict, NotFound
from shared.inference.registered_onnx import (
    KINDS,
    ModelSpec,
    box_rows,
    open_session,
    score_vector,
)
from shared.inference.registry import get_registry
from shared.models import OnnxModel, PostProcessor
from shared.services.files import delete_after_commit
from shared.storage import get_storage, read_chunks

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# protobuf refuses single-file models past 2 GiB anyway.
MAX_MODEL_BYTES = 2**31


class InvalidModel(AppError):
    """The model or its labels cannot be used."""


def parse_input_size(text: str) -> tuple[int, int]:
    """`WIDTHxHEIGHT`, or one number for a square: (width, height)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if match is None or int(match[1]) < 1 or (match[2] is not None and int(match[2]) < 1):
        raise ValueError(f"{text!r} is not an input size: give WIDTHxHEIGHT, e.g. 224x224")
    width = int(match[1])
    return width, int(match[2]) if match[2] is not None else width


def read_labels(path: Path) -> list[str]:
    """Labels from a file: a JSON array of strings, or one label per line
    (blank lines skipped)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidModel(f"Cannot read the labels file {str(path)!r}: {error}") from error
    if text.lstrip().startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidModel(f"The labels file is not a valid JSON array: {error}") from error
        if not isinstance(value, list) or not all(isinstance(label, str) for label in value):
            raise InvalidModel("A JSON labels file must be an array of strings.")
        labels = [label.strip() for label in value]
    else:
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise InvalidModel(f"The labels file {str(path)!r} names no labels.")
    if "" in labels:
        raise InvalidModel("A label name is empty.")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise InvalidModel(f"Labels named more than once: {', '.join(repeated)}.")
    return labels


def inspect_model(
    model_bytes: bytes, kind: str, labels: list[str], input_size: tuple[int, int] | None
) -> tuple[int, int]:
    """Check the network against the conventions; its input (width, height)."""
    try:
        session = open_session(model_bytes)
    except Exception as error:  # onnxruntime raises its own untyped errors
        raise InvalidModel(f"onnxruntime cannot load the model: {error}") from error
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise InvalidModel(f"The model must take one image input; it takes {len(inputs)}.")
    image_input = inputs[0]
    if image_input.type != "tensor(float)" or len(image_input.shape) != 4:
        raise InvalidModel(
            "The model's input must be a float32 NCHW image tensor; "
            f"it is {image_input.type} of shape {image_input.shape}."
        )
    batch, channels, height, width = (_fixed(dim) for dim in image_input.shape)
    if batch not in (None, 1) or channels not in (None, 3):
        raise InvalidModel(
            f"The model's input must be one RGB image, [1, 3, H, W]; it is {image_input.shape}."
        )
    if input_size is None:
        if width is None or height is None:
            raise InvalidModel(
                f"The model's input size is not fixed ({image_input.shape}): "
                "give it with --input-size WIDTHxHEIGHT."
            )
        input_size = (width, height)
    elif (width or input_size[0], height or input_size[1]) != input_size:
        raise InvalidModel(
            f"--input-size {input_size[0]}x{input_size[1]} does not match the model's input, "
            f"{width}x{height}."
        )
    blank = numpy.zeros((1, 3, input_size[1], input_size[0]), dtype=numpy.float32)
    try:
        output = session.run(None, {image_input.name: blank})[0]
    except Exception as error:
        raise InvalidModel(f"The model failed on a blank image: {error}") from error
    try:
        if kind == "classification":
            count = len(score_vector(output))
            if count != len(labels):
                raise InvalidModel(
                    f"The model gives {count} scores but the labels file names "
                    f"{len(labels)} labels."
                )
        else:
            box_rows(output)
    except ValueError as error:
        raise InvalidModel(f"The model's output does not fit --kind {kind}: {error}") from error
    return input_size


def add_model(
    session: Session,
    name: str,
    onnx_file: Path,
    labels_file: Path,
    kind: str = "classification",
    input_size: tuple[int, int] | None = None,
    replace: bool = False,
) -> OnnxModel:
    """Register a model, or with `replace` give a registered one a new file
    and labels (workers load the new file at their next job)."""
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidModel(
            f"{name!r} is not a model name: use up to 100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    if kind not in KINDS:
        raise InvalidModel(f"The kind must be one of {', '.join(KINDS)}, not {kind!r}.")
    if get_registry().model_class(kind, name) is not None:
        raise Conflict(f"An installed model already serves {kind} with model_id {name!r}.")
    labels = read_labels(labels_file)
    try:
        model_bytes = onnx_file.read_bytes()
    except OSError as error:
        raise InvalidModel(f"Cannot read the model file {str(onnx_file)!r}: {error}") from error
    width, height = inspect_model(model_bytes, kind, labels, input_size)

    row = session.scalar(select(OnnxModel).where(OnnxModel.name == name))
    if row is not None and not replace:
        raise Conflict(f"A model named {name!r} is already registered (--replace replaces it).")
    storage = get_storage()
    staged = asyncio.run(storage.stage(read_chunks(io.BytesIO(model_bytes)), MAX_MODEL_BYTES))
    if row is None:
        row = OnnxModel(name=name)
        session.add(row)
    else:
        delete_after_commit(session, [row.file_key])
    row.kind = kind
    row.labels = json.dumps(labels)
    row.file_key = staged.key
    row.file_size = staged.size
    row.sha256 = staged.sha256
    row.input_width, row.input_height = width, height
    try:
        session.flush()
    except IntegrityError as error:
        # Registered by someone else since the check above.
        storage.delete(staged.key)
        raise Conflict(f"A model named {name!r} is already registered.") from error
    return row


def registered_spec(session: Session, model_type: str, model_id: str) -> ModelSpec | None:
    """What a worker needs to run the registered model a post-processor
    names, if one of that kind is registered under `model_id`. None, with
    no query, where a packaged model serves the name: that one runs."""
    if model_type not in KINDS or not model_id:
        return None
    if get_registry().model_class(model_type, model_id) is not None:
        return None
    row = session.scalar(
        select(OnnxModel).where(OnnxModel.name == model_id, OnnxModel.kind == model_type)
    )
    return ModelSpec.from_row(row) if row is not None else None


def registered_model_kinds(session: Session, names: set[str]) -> set[tuple[str, str]]:
    """(name, kind) of the registered models among `names`, in one query."""
    if not names:
        return set()
    rows = session.execute(select(OnnxModel.name, OnnxModel.kind).where(OnnxModel.name.in_(names)))
    return {(name, kind) for name, kind in rows}


def list_models(session: Session) -> list[OnnxModel]:
    return list(session.scalars(select(OnnxModel).order_by(OnnxModel.name)))


def remove_model(session: Session, name: str) -> int:
    """Unregister a model and delete its file; how many post-processors
    still name it (their jobs will fail until the name is registered
    again)."""
    row = session.scalar(select(OnnxModel).where(OnnxModel.name == name))
    if row is None:
        raise NotFound(f"No model named {name!r} is registered.")
    users = session.scalar(
        select(func.count())
        .select_from(PostProcessor)
        .where(PostProcessor.model_type == row.kind, PostProcessor.model_id == name)
    )
    session.delete(row)
    delete_after_commit(session, [row.file_key])
    return int(users or 0)


def _fixed(dim: Any) -> int | None:
    """A dimension's size, or None when it is symbolic (dynamic)."""
    return dim if isinstance(dim, int) and dim > 0 else None

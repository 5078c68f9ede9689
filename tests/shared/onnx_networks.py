"""Tiny real ONNX networks whose outputs are known, built with the `onnx`
helper API, and the CLI call that registers them."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import numpy
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from shared import cli

COLOURS = ["red", "green", "blue"]
# Opset 13 keeps ReduceMean's axes an attribute; IR 8 loads in any recent
# onnxruntime.
OPSET = [helper.make_opsetid("", 13)]


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=OPSET)
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def channel_mean_classifier(path: Path, height: int | str = 8, width: int | str = 8) -> Path:
    """Scores each colour by the mean of its channel: [1, 3, H, W] -> [1, 3].
    A pure red image scores (1, 0, 0)."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, height, width])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3])
    mean = helper.make_node("ReduceMean", ["image"], ["scores"], axes=[2, 3], keepdims=0)
    return _save(helper.make_graph([mean], "channel-mean", [image], [scores]), path)


def constant_detector(path: Path, boxes: list[list[float]], height: int, width: int) -> Path:
    """Answers the same [N, 6] boxes, in input pixels, whatever the image."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, height, width])
    output = helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [len(boxes), 6])
    constant = helper.make_node(
        "Constant",
        [],
        ["boxes"],
        value=numpy_helper.from_array(numpy.array(boxes, dtype=numpy.float32), "value"),
    )
    return _save(helper.make_graph([constant], "constant-boxes", [image], [output]), path)


def labels_file(path: Path, labels: list[str]) -> Path:
    path.write_text("\n".join(labels) + "\n")
    return path


def image_file(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Path:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue())
    return path


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def register(name: str, onnx_file: Path, labels: Path, *options: str) -> int:
    return cli.main(
        ["models", "add", name, "--onnx", str(onnx_file), "--labels", str(labels), *options]
    )

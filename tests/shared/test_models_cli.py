"""`itemflow models add|list|remove`: registering ONNX models."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from shared import cli
from shared.db import session_scope
from shared.models import OnnxModel
from shared.services.onnx_models import parse_input_size
from shared.settings import get_settings
from tests.shared.onnx_networks import (
    COLOURS,
    channel_mean_classifier,
    constant_detector,
    labels_file,
    register,
    unique_name,
)


def stored(name):
    with session_scope() as session:
        return session.scalar(select(OnnxModel).where(OnnxModel.name == name))


def test_add_stores_the_model_and_prints_a_summary(tmp_path, capsys):
    name = unique_name("colours")
    onnx_file = channel_mean_classifier(tmp_path / "m.onnx")

    assert register(name, onnx_file, labels_file(tmp_path / "labels.txt", COLOURS)) == 0

    out = capsys.readouterr().out
    assert f"registered classification model {name!r}: input 8x8, 3 labels" in out
    row = stored(name)
    assert (row.kind, json.loads(row.labels)) == ("classification", COLOURS)
    assert (row.input_width, row.input_height) == (8, 8)
    copy = get_settings().files_dir / row.file_key
    assert copy.read_bytes() == onnx_file.read_bytes()
    assert row.file_size == onnx_file.stat().st_size and len(row.sha256) == 64

    assert cli.main(["models", "list"]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith(name)]
    assert line.split()[1:5] == ["classification", "8x8", "3", row.sha256[:12]]


def test_labels_may_be_a_json_array_and_a_dynamic_size_needs_input_size(tmp_path, capsys):
    onnx_file = channel_mean_classifier(tmp_path / "m.onnx", height="H", width="W")
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(COLOURS))
    name = unique_name("dynamic")

    assert register(name, onnx_file, labels) == 2
    assert "--input-size" in capsys.readouterr().err

    assert register(name, onnx_file, labels, "--input-size", "32x16") == 0
    row = stored(name)
    assert (row.input_width, row.input_height, json.loads(row.labels)) == (32, 16, COLOURS)


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("not onnx", "onnxruntime cannot load the model"),
        ("four labels", "gives 3 scores but the labels file names 4 labels"),
        ("detector as classifier", "does not fit --kind classification"),
        ("size mismatch", "does not match the model's input, 8x8"),
        ("duplicate labels", "Labels named more than once: red"),
        ("bad name", "is not a model name"),
    ],
)
def test_a_bad_model_is_refused_with_exit_code_2(tmp_path, capsys, problem, message):
    onnx_file = channel_mean_classifier(tmp_path / "m.onnx")
    labels = labels_file(tmp_path / "labels.txt", COLOURS)
    name, options = unique_name("bad"), []
    if problem == "not onnx":
        onnx_file.write_bytes(b"this is not a network")
    elif problem == "four labels":
        labels = labels_file(tmp_path / "four.txt", [*COLOURS, "alpha"])
    elif problem == "detector as classifier":
        onnx_file = constant_detector(tmp_path / "d.onnx", [[0, 0, 1, 1, 1, 0]] * 3, 8, 8)
    elif problem == "size mismatch":
        options = ["--input-size", "16x16"]
    elif problem == "duplicate labels":
        labels = labels_file(tmp_path / "dup.txt", ["red", "green", "red"])
    elif problem == "bad name":
        name = "../escape"

    assert register(name, onnx_file, labels, *options) == 2

    assert message in capsys.readouterr().err
    assert stored(name) is None


def test_a_name_in_use_is_refused_unless_replaced(tmp_path, capsys):
    name = unique_name("taken")
    labels = labels_file(tmp_path / "labels.txt", COLOURS)
    assert register(name, channel_mean_classifier(tmp_path / "a.onnx"), labels) == 0
    first = stored(name)
    replacement = channel_mean_classifier(tmp_path / "b.onnx", height=4, width=4)

    assert register(name, replacement, labels) == 2
    assert "already registered" in capsys.readouterr().err

    assert register(name, replacement, labels, "--replace") == 0
    second = stored(name)
    assert second.id == first.id and second.sha256 != first.sha256
    assert (second.input_width, second.input_height) == (4, 4)
    # The replaced file is gone from storage.
    assert not (get_settings().files_dir / first.file_key).exists()


def test_a_name_a_packaged_model_serves_is_refused(tmp_path, capsys):
    # tests.plugins:FlakyModel serves classification/test-flaky.
    onnx_file = channel_mean_classifier(tmp_path / "m.onnx")
    labels = labels_file(tmp_path / "labels.txt", COLOURS)

    assert register("test-flaky", onnx_file, labels) == 2
    assert "An installed model already serves" in capsys.readouterr().err


def test_remove_deletes_the_row_and_the_file(tmp_path, capsys):
    name = unique_name("gone")
    onnx_file = channel_mean_classifier(tmp_path / "m.onnx")
    register(name, onnx_file, labels_file(tmp_path / "labels.txt", COLOURS))
    key = stored(name).file_key

    assert cli.main(["models", "remove", name]) == 0
    assert stored(name) is None
    assert not (get_settings().files_dir / key).exists()

    assert cli.main(["models", "remove", name]) == 2
    assert "No model named" in capsys.readouterr().err


def test_input_sizes_are_width_by_height_or_one_number():
    assert parse_input_size("224") == (224, 224)
    assert parse_input_size("320x240") == (320, 240)
    with pytest.raises(ValueError):
        parse_input_size("0x10")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["models", "add", "m", "--onnx", "x", "--labels", "y", "--input-size", "big"])
    assert exit_info.value.code == 2


def test_a_model_registered_on_s3_is_kept_in_and_read_from_the_bucket(
    tmp_path, s3_server, s3_prefix
):
    from shared.inference.base import TransientError
    from shared.inference.registered_onnx import ModelSpec, _read_model_file

    name = unique_name("on-s3")
    onnx_file = channel_mean_classifier(tmp_path / "m.onnx")
    try:
        with pytest.MonkeyPatch.context() as patch:
            for variable, value in s3_server.settings(s3_prefix).items():
                patch.setenv(variable, value)
            get_settings.cache_clear()

            assert register(name, onnx_file, labels_file(tmp_path / "l.txt", COLOURS)) == 0
            spec = ModelSpec.from_row(stored(name))
            assert s3_server.objects(s3_prefix) == {s3_prefix + spec.file_key}
            assert _read_model_file(spec) == onnx_file.read_bytes()

            s3_server.client().delete_object(Bucket=s3_server.bucket, Key=s3_prefix + spec.file_key)
            # Transient: a replace after the claim removes the old file.
            with pytest.raises(TransientError, match="missing from storage"):
                _read_model_file(spec)
    finally:
        get_settings.cache_clear()

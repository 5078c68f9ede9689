"""Registered ONNX models: registered through the CLI, read by a job's
claim, built by the registry, run by onnxruntime."""

from __future__ import annotations

import json
import math
import uuid

import pytest
from sqlalchemy import select, update

from shared import cli
from shared.db import session_scope
from shared.inference.base import ItemInput, PermanentError, PostProcessorConfig
from shared.inference.registered_onnx import RegisteredOnnx
from shared.inference.registry import MissingModel, load_registry
from shared.models import Annotation, DatasetItem, Label, PostProcessor
from shared.services import onnx_models
from shared.services.execution import run_job
from shared.settings import get_settings
from tests.shared.factories import make_job
from tests.shared.onnx_networks import (
    COLOURS,
    channel_mean_classifier,
    constant_detector,
    image_file,
    labels_file,
    register,
    unique_name,
)

# In pixels of a 100x50 input: scaled by 3 and 4 onto a 300x200 image.
BOXES = [
    [10, 5, 60, 25, 0.9, 0],
    [-5, 40, 120, 70, 0.3, 1],  # runs off the input: clipped to the image
    [20, 20, 20, 30, 0.8, 0],  # no width: dropped
]


def served(model_type, model_id=""):
    """The model a job of this post-processor would run: the claim reads the
    registered model, the registry builds it."""
    with session_scope() as session:
        spec = onnx_models.registered_spec(session, model_type, model_id)
    return load_registry().get(model_type, model_id, spec)


def item(media_type="image/png"):
    return ItemInput(
        id=uuid.uuid4(), name="i", description="", text="", extension="png", media_type=media_type
    )


def config(model_type, model_id):
    return PostProcessorConfig(id=uuid.uuid4(), name="p", model_type=model_type, model_id=model_id)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classifier")
    name = unique_name("colours")
    onnx_file = channel_mean_classifier(folder / "m.onnx")
    assert register(name, onnx_file, labels_file(folder / "labels.txt", COLOURS)) == 0
    return name


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detector")
    name = unique_name("boxes")
    onnx_file = constant_detector(folder / "d.onnx", BOXES, height=50, width=100)
    labels = labels_file(folder / "labels.txt", ["cat", "dog"])
    assert register(name, onnx_file, labels, "--kind", "detection") == 0
    return name


def test_a_pure_red_image_is_red(classifier, tmp_path):
    model = served("classification", classifier)

    output = model.run(item(), image_file(tmp_path / "red.png", (255, 0, 0)), config("", ""))

    assert isinstance(model, RegisteredOnnx) and model.kind == "onnx"
    assert output.text == "red"
    assert [(p.label, p.score) for p in output.predictions] == [
        ("red", 1.0),
        ("green", 0.0),
        ("blue", 0.0),
    ]
    assert output.raw["scores"] == {"red": 1.0, "green": 0.0, "blue": 0.0}


def test_scores_that_are_not_a_distribution_are_softmaxed(classifier, tmp_path):
    model = served("classification", classifier)

    # Channel means (0, 1, 1): sum 2, so taken as logits.
    output = model.run(item(), image_file(tmp_path / "cyan.png", (0, 255, 255)), config("", ""))

    e = math.e
    expected = {"green": e / (2 * e + 1), "blue": e / (2 * e + 1), "red": 1 / (2 * e + 1)}
    assert {p.label: p.score for p in output.predictions} == {
        label: round(score, 4) for label, score in expected.items()
    }
    assert output.text in ("green", "blue")


def test_boxes_are_scaled_back_to_the_image_in_pixels(detector, tmp_path):
    model = served("detection", detector)

    output = model.run(
        item(), image_file(tmp_path / "i.png", (9, 9, 9), (300, 200)), config("", "")
    )

    assert [(p.label, p.score, p.coordinates) for p in output.predictions] == [
        ("cat", 0.9, {"x": 30, "y": 20, "width": 150, "height": 80}),
        ("dog", 0.3, {"x": 0, "y": 160, "width": 300, "height": 40}),
    ]
    assert output.text is None
    assert output.raw["image"] == {"width": 300, "height": 200}


def test_a_model_loads_once_per_process_and_again_when_its_file_changes(tmp_path):
    name = unique_name("reload")
    labels = labels_file(tmp_path / "labels.txt", COLOURS)
    register(name, channel_mean_classifier(tmp_path / "a.onnx"), labels)
    first = served("classification", name)
    assert served("classification", name) is first

    register(name, channel_mean_classifier(tmp_path / "b.onnx", 4, 4), labels, "--replace")

    second = served("classification", name)
    assert second is not first and second.spec.input_width == 4
    assert second.spec.sha256 != first.spec.sha256


def test_an_id_that_is_not_registered_is_a_missing_model(classifier, detector, tmp_path):
    for model_type, model_id in [
        ("classification", "never-registered"),
        ("detection", classifier),  # registered, but as a classifier
        ("ocr", classifier),
    ]:
        model = served(model_type, model_id)
        assert isinstance(model, MissingModel)
        with pytest.raises(PermanentError, match=f"with model_id {model_id!r}"):
            model.run(item(), None, config(model_type, model_id))
    # The packaged detector still serves the type's default.
    assert served("detection").name == "opencv-haar-frontalface"


def test_a_removed_model_is_missing_afterwards(tmp_path):
    name = unique_name("removed")
    register(
        name, channel_mean_classifier(tmp_path / "m.onnx"), labels_file(tmp_path / "l", COLOURS)
    )
    assert isinstance(served("classification", name), RegisteredOnnx)

    assert cli.main(["models", "remove", name]) == 0

    assert isinstance(served("classification", name), MissingModel)


def test_a_file_that_is_not_an_image_fails_permanently(classifier, tmp_path):
    model = served("classification", classifier)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(PermanentError, match="reads images"):
        model.run(item("text/plain"), text, config("", ""))
    with pytest.raises(PermanentError, match="cannot be read"):
        model.run(item(), text, config("", ""))


def test_a_job_annotates_the_item_with_the_models_labels(classifier, tmp_path):
    job, dataset_item, version = make_job(model_id=classifier)
    key = uuid.uuid4().hex
    files_dir = get_settings().files_dir
    files_dir.mkdir(parents=True, exist_ok=True)
    image_file(files_dir / key, (255, 0, 0))
    with session_scope() as session:
        session.execute(
            update(DatasetItem)
            .where(DatasetItem.id == dataset_item.id)
            .values(file_key=key, file_media_type="image/png", extension="png")
        )
        session.execute(
            update(PostProcessor)
            .where(PostProcessor.id == job.post_processor_id)
            .values(output_target="annotations", auto_create_labels=True, confidence_threshold=0.5)
        )

    assert run_job(job.id).status == "completed"

    with session_scope() as session:
        rows = session.execute(
            select(Label.name, Annotation.coordinates)
            .join(Annotation, Annotation.label_id == Label.id)
            .where(Annotation.item_id == dataset_item.id)
        )
        assert list(rows) == [("red", "")]
        result = json.loads(session.get_one(type(job), job.id).result)
        assert result["model"] == classifier and max(result["scores"].values()) > 0.5


@pytest.mark.parametrize(
    ("reader", "output"),
    [
        ("score_vector", [[float("nan"), 1.0, 2.0]]),
        ("box_rows", [[0.0, 0.0, float("inf"), 4.0, 0.9, 0.0]]),
    ],
)
def test_output_that_is_not_finite_is_refused(reader, output):
    from shared.inference import registered_onnx

    with pytest.raises(ValueError, match="not all finite"):
        getattr(registered_onnx, reader)(output)

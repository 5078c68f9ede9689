from pathlib import Path

import pytest

from shared.inference.base import ItemInput, PermanentError, PostProcessorConfig
from shared.inference.document_text import DocumentText
from shared.inference.registered_onnx import ModelSpec
from shared.inference.registry import DuplicateModel, MissingModel, Registry, load_registry
from tests.plugins import FlakyModel, RejectingModel


def test_entry_points_register_the_ocr_model():
    registry = load_registry()
    assert registry.model_class("ocr") is DocumentText


def test_extra_models_come_from_the_setting_and_are_chosen_by_model_id():
    registry = load_registry("tests.plugins:FlakyModel, tests.plugins:RejectingModel")
    assert registry.model_class("classification", "test-flaky") is FlakyModel
    assert registry.model_class("classification", "test-reject") is RejectingModel
    # No default model for the type, so an unknown id finds nothing.
    assert registry.model_class("classification", "other") is None


def test_an_unknown_model_id_finds_no_model_rather_than_the_default():
    registry = load_registry()
    assert registry.model_class("ocr", "tesseract") is None
    with pytest.raises(PermanentError, match="model_type 'ocr' with model_id 'tesseract'"):
        registry.get("ocr", "tesseract").run(
            ItemInput(id=None, name="", description="", text="", extension="", media_type=""),
            None,
            PostProcessorConfig(id=None, name="p", model_type="ocr", model_id="tesseract"),
        )


def test_two_models_for_the_same_type_and_id_are_refused():
    registry = load_registry()

    class AnotherOcr(DocumentText):
        pass

    with pytest.raises(DuplicateModel, match="both serve"):
        registry.register(AnotherOcr)


def test_a_type_without_a_model_fails_permanently_naming_it():
    model = Registry().get("stt")
    assert isinstance(model, MissingModel)
    item = ItemInput(id=None, name="", description="", text="", extension="wav", media_type="")
    config = PostProcessorConfig(id=None, name="p", model_type="stt")
    with pytest.raises(PermanentError, match="model_type 'stt'"):
        model.run(item, Path("/nonexistent"), config)


def test_models_are_built_once_per_process():
    registry = load_registry("tests.plugins:FlakyModel")
    assert registry.get("classification", "test-flaky") is registry.get(
        "classification", "test-flaky"
    )


def test_a_registered_model_never_shadows_a_class():
    registry = load_registry("tests.plugins:FlakyModel")
    spec = ModelSpec("test-flaky", "classification", ("a",), "none", "0" * 64, 2, 2)

    # A class serves the key: the spec (whose file does not exist) is not used.
    assert isinstance(registry.get("classification", "test-flaky", spec), FlakyModel)
    missing = registry.get("classification", "other", None)
    assert isinstance(missing, MissingModel)


def test_something_that_is_not_a_model_class_is_refused():
    for plugin in (object(), dict, lambda model_type, model_id: None):
        with pytest.raises(TypeError, match="not a post-processor model class"):
            Registry().add(plugin)

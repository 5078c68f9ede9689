"""Providers: models that are data, asked only for keys no class serves."""

from __future__ import annotations

import pytest

from shared.postprocessors.registry import MissingModel, Registry
from tests.plugins import FlakyModel, RejectingModel


def test_a_provider_serves_keys_no_class_claims_and_never_shadows_one():
    asked = []
    served = RejectingModel()

    def provider(model_type, model_id):
        asked.append((model_type, model_id))
        return served if model_id == "from-provider" else None

    registry = Registry()
    registry.add(FlakyModel)
    registry.add(provider)
    registry.add(provider)  # added once

    assert registry.get("classification", "from-provider") is served
    assert isinstance(registry.get("classification", "test-flaky"), FlakyModel)
    assert isinstance(registry.get("classification", "other"), MissingModel)
    assert asked == [("classification", "from-provider"), ("classification", "other")]


def test_something_that_is_neither_a_model_nor_a_provider_is_refused():
    with pytest.raises(TypeError, match="neither"):
        Registry().add(object())
    with pytest.raises(TypeError, match="neither"):
        Registry().add(dict)

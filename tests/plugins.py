"""Test-only post-processors, registered through the same registry as the
real ones (the POST_PROCESSORS setting names them for the test worker)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from shared.postprocessors.base import (
    ItemInput,
    ModelOutput,
    PermanentError,
    PostProcessorConfig,
    PostProcessorModel,
    Prediction,
    TransientError,
)


def _runs_so_far(key: str) -> int:
    """Count this run in a file shared by all worker processes and return
    how many runs came before it."""
    path = Path(os.environ["ITEMFLOW_TEST_STATE_DIR"]) / key
    with open(path, "ab") as counter:
        counter.write(b".")
        counter.flush()
        return counter.tell() - 1


class FlakyModel(PostProcessorModel):
    """Fails transiently `fail_times` times per item (from the prompt, as
    JSON), then succeeds, predicting the labels named in `labels`."""

    model_type = "classification"
    model_id = "test-flaky"
    name = "flaky test model"
    kind = "test"

    def run(self, item: ItemInput, file: Path | None, config: PostProcessorConfig) -> ModelOutput:
        options = json.loads(config.prompt or "{}")
        runs = _runs_so_far(f"{config.id}-{item.id}")
        if runs < options.get("fail_times", 0):
            raise TransientError(f"flaky failure number {runs + 1}")
        predictions = [
            Prediction(label=name, score=score) for name, score in options.get("labels", {}).items()
        ]
        return ModelOutput(
            raw={"runs": runs + 1, "labels": options.get("labels", {})},
            text=options.get("text", f"processed {item.name}"),
            predictions=predictions,
        )


class RejectingModel(PostProcessorModel):
    """Rejects every input, as a model does with a file it cannot read."""

    model_type = "classification"
    model_id = "test-reject"
    name = "rejecting test model"
    kind = "test"

    def run(self, item: ItemInput, file: Path | None, config: PostProcessorConfig) -> ModelOutput:
        raise PermanentError("the test model rejects every input")

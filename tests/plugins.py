"""Test-only post-processors, registered through the same registry as the
real ones (the POST_PROCESSORS setting names them for the test worker)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from shared.inference.base import (
    ItemInput,
    ModelOutput,
    PermanentError,
    PostProcessorConfig,
    PostProcessorModel,
    Prediction,
    TransientError,
)


def runs_so_far(key: str) -> int:
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
        runs = runs_so_far(f"{config.id}-{item.id}")
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


class SlowModel(PostProcessorModel):
    """Sleeps `sleep` seconds on its first run per item, then answers at once.
    With `ignore_soft_limit`, it sleeps through the soft time limit too, so
    that only the hard limit can stop it. The test settings give its model
    type 2 s soft and 4 s hard limits."""

    model_type = "ner"
    model_id = "test-slow"
    name = "slow test model"
    kind = "test"

    def run(self, item: ItemInput, file: Path | None, config: PostProcessorConfig) -> ModelOutput:
        from celery.exceptions import SoftTimeLimitExceeded

        options = json.loads(config.prompt or "{}")
        if runs_so_far(f"{config.id}-{item.id}") == 0:
            deadline = time.monotonic() + options.get("sleep", 0)
            while time.monotonic() < deadline:
                try:
                    time.sleep(0.05)
                except SoftTimeLimitExceeded:
                    if not options.get("ignore_soft_limit"):
                        raise
        return ModelOutput(raw={"slept": True}, text="woke up")

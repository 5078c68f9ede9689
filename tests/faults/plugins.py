"""Test-only post-processors for fault injection, registered like the ones
in tests/plugins.py (the fault tests name them in POST_PROCESSORS for the
processes they start)."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from shared.inference.base import (
    ItemInput,
    ModelOutput,
    PostProcessorConfig,
    PostProcessorModel,
    Prediction,
    TransientError,
)
from tests.plugins import runs_so_far


def pid_file(post_processor_id: str, item_id: str) -> Path:
    """Where the stalling model's first run per item writes its process id."""
    state = Path(os.environ["ITEMFLOW_TEST_STATE_DIR"])
    return state / f"stall-{post_processor_id}-{item_id}.pid"


class StallingModel(PostProcessorModel):
    """On its first run per item, writes its process id to `pid_file` and
    sleeps `sleep` seconds (from the prompt, as JSON), long enough for a
    test to kill that process mid-job; later runs predict the labels named
    in `labels` at once."""

    model_type = "classification"
    model_id = "test-stall"
    name = "stalling test model"
    kind = "test"

    def run(self, item: ItemInput, file: Path | None, config: PostProcessorConfig) -> ModelOutput:
        options = json.loads(config.prompt or "{}")
        runs = runs_so_far(f"stall-{config.id}-{item.id}")
        if runs == 0 and options.get("sleep"):
            path = pid_file(str(config.id), str(item.id))
            # Written whole, then renamed: a test never reads half a pid.
            path.with_suffix(".tmp").write_text(str(os.getpid()))
            path.with_suffix(".tmp").replace(path)
            time.sleep(options["sleep"])
        labels = options.get("labels", {})
        return ModelOutput(
            raw={"runs": runs + 1, "labels": labels},
            predictions=[Prediction(label=name, score=score) for name, score in labels.items()],
        )


class CrashingModel(PostProcessorModel):
    """Kills the process running it, every time: a poison job."""

    model_type = "classification"
    model_id = "test-crash"
    name = "crashing test model"
    kind = "test"

    def run(self, item: ItemInput, file: Path | None, config: PostProcessorConfig) -> ModelOutput:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")


def runs_file(post_processor_id: str) -> Path:
    """Where the unreliable model writes one line per run: item id, outcome."""
    return Path(os.environ["ITEMFLOW_TEST_STATE_DIR"]) / f"runs-{post_processor_id}.log"


class UnreliableModel(PostProcessorModel):
    """Fails transiently at random, `failure_rate` of its runs (from the
    prompt, as JSON; 0.3 if not given), else writes "done <item name>" as
    the item's text. Each run is also written to `runs_file`, so that a test
    can count the runs apart from what the database says."""

    model_type = "classification"
    model_id = "test-unreliable"
    name = "unreliable test model"
    kind = "test"

    def run(self, item: ItemInput, file: Path | None, config: PostProcessorConfig) -> ModelOutput:
        options = json.loads(config.prompt or "{}")
        failed = random.random() < options.get("failure_rate", 0.3)
        # One short line per write in append mode: lines from processes
        # writing at once do not interleave.
        with open(runs_file(str(config.id)), "a") as runs:
            runs.write(f"{item.id} {'failed' if failed else 'ok'}\n")
        if failed:
            raise TransientError("a random transient failure")
        return ModelOutput(raw={"item": str(item.id)}, text=f"done {item.name}")

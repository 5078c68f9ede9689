"""What the engine benchmark runs: a post-processor model that does nothing,
and a raw Celery task that does as little, each counting its runs with one
append to a file (as cheap as the Redis INCR of a minimal task), so that
only the machinery around them is measured."""

from __future__ import annotations

import os
from pathlib import Path

from shared.inference.base import ItemInput, ModelOutput, PostProcessorConfig, PostProcessorModel


def count_run() -> None:
    with open(os.environ["BENCH_COUNTER"], "ab") as counter:
        counter.write(b".")


class NoopModel(PostProcessorModel):
    model_type = "classification"
    model_id = "bench-noop"
    name = "no-op benchmark model"
    kind = "test"

    def run(self, item: ItemInput, file: Path | None, config: PostProcessorConfig) -> ModelOutput:
        count_run()
        return ModelOutput(raw={})


def raw_celery_app():  # type: ignore[no-untyped-def]
    """itemflow's own Celery settings (acks_late, prefetch 1, the same
    concurrency and broker), with one no-op task."""
    from shared.broker import make_celery

    app = make_celery()

    @app.task(name="bench.noop")
    def noop() -> None:
        count_run()

    return app


app = raw_celery_app() if os.environ.get("BENCH_RAW_CELERY") else None

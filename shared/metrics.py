"""Prometheus metrics: what the workers ran and how long it took, how long
the API took to answer, and, counted when scraped, the jobs by status and
the messages waiting in each queue.

A prefork worker runs its jobs in child processes, and the API may run
several processes (API_WORKERS): each writes its counts to files of its own
in METRICS_DIR (prometheus_client's multiprocess mode), and a /metrics sums
the files there. On one machine (`itemflow up`) that is one directory for
the API and the workers, and the API's /metrics has all of it; a worker on
a machine of its own serves its own on WORKER_METRICS_PORT.

The API's and the workers' processes turn that on before they import this
module (shared/metrics_files.py); other processes that import it (Flower,
through the worker's tasks) count in memory and leave the files alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.metrics_files import MULTIPROCESS
from shared.settings import get_settings

# prometheus_client picks where values live when it is first imported,
# which may have been before this process chose files.
values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]

log = logging.getLogger(__name__)

__all__ = ["CONTENT_TYPE_LATEST", "HTTP_DURATION", "job_ran", "scrape", "worker_registry"]

JOB_RUNS = Counter(
    "itemflow_job_runs",
    "Job messages a worker ran, by the job's model type and how the run ended.",
    ["model_type", "outcome"],
)
JOB_DURATION = Histogram(
    "itemflow_job_duration_seconds",
    "Seconds a worker spent on a job's run (claim, model, outcome written).",
    ["model_type", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900),
)
HTTP_DURATION = Histogram(
    "itemflow_http_request_duration_seconds",
    "Seconds the API took to answer, by route template, method and status.",
    ["route", "method", "status"],
)


def job_ran(model_type: str, outcome: str, seconds: float | None) -> None:
    """Count a run of a job's message; its time unless it ran nothing (a
    duplicate message that found nothing to claim)."""
    model_type = model_type or "unknown"
    JOB_RUNS.labels(model_type, outcome).inc()
    if seconds is not None:
        JOB_DURATION.labels(model_type, outcome).observe(seconds)


def worker_registry() -> CollectorRegistry:
    """What this machine's processes counted."""
    registry = CollectorRegistry()
    folder = os.environ.get(MULTIPROCESS) or str(get_settings().metrics_folder)
    multiprocess.MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    return registry


class JobsCollector(Collector):
    """itemflow_jobs{status, model_type}: the jobs in the database, counted
    in one grouped query when scraped."""

    def collect(self) -> Iterator[Metric]:
        from sqlalchemy import func, select

        from shared.db import session_scope
        from shared.models import JobStatus, PostProcessor, PostProcessorJob

        family = GaugeMetricFamily(
            "itemflow_jobs", "Jobs by status and model type.", labels=["status", "model_type"]
        )
        with session_scope() as session:
            rows = session.execute(
                select(PostProcessor.model_type, PostProcessorJob.status, func.count())
                .join(PostProcessor, PostProcessor.id == PostProcessorJob.post_processor_id)
                .group_by(PostProcessor.model_type, PostProcessorJob.status)
            ).all()
        counted = {(status, model_type): count for model_type, status, count in rows}
        # Every status of each model type seen, 0 included: a series that
        # drops to nothing should read 0, not vanish.
        for model_type in sorted({model_type for _, model_type in counted}):
            for status in JobStatus:
                family.add_metric(
                    [status.value, model_type], counted.get((status.value, model_type), 0)
                )
        yield family


class QueuesCollector(Collector):
    """itemflow_queue_length{queue}: messages waiting in each job queue of
    the broker (not those a worker holds); the queues of `queue_name`, the
    installation's own unless given."""

    def __init__(self, queue_name: str | None = None) -> None:
        self.queue_name = queue_name

    def collect(self) -> Iterator[Metric]:
        from kombu.exceptions import ChannelError

        from shared.broker import QUEUES, celery_app, queue_for

        family = GaugeMetricFamily(
            "itemflow_queue_length", "Messages waiting in a job queue.", labels=["queue"]
        )
        settings = get_settings()
        if self.queue_name is not None:
            settings = settings.model_copy(update={"queue_name": self.queue_name})
        with celery_app().connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            for name in QUEUES:
                queue = queue_for(name, settings)
                channel = connection.channel()
                try:
                    waiting = channel.queue_declare(queue=queue, passive=True).message_count
                except ChannelError:
                    waiting = 0  # never declared, or emptied and gone: nothing waits
                finally:
                    # One the broker closed for the passive declare is gone.
                    with contextlib.suppress(Exception):
                        channel.close()
                family.add_metric([queue], waiting)
        yield family


def scrape() -> bytes:
    """The API's /metrics: this machine's processes' counts, the jobs and
    the queues. A part that cannot be read now (the broker down, say) is
    left out and logged; the rest is served."""
    registry = worker_registry()
    for collector in (JobsCollector(), QueuesCollector()):
        try:
            families = list(collector.collect())
        except Exception as error:
            name = type(collector).__name__
            log.warning("event=metrics.collect_failed collector=%s error=%r", name, error)
            continue
        registry.register(_Fixed(families))
    return generate_latest(registry)


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families

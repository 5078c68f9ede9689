"""The broker, as every part of itemflow reaches it: Celery's configuration,
read from the settings, and the app that sends job messages (from the API,
the reaper and the jobs service) and checks the broker answers.

Delivery is at least once. A message is acknowledged only after its task
ran (acks_late), and given back if the worker process dies mid-task
(reject_on_worker_lost). Each worker process reserves one message at a time
(prefetch 1), so a slow job does not hold others hostage. Running a job
twice is harmless: the claim in the database lets only one run count, and a
job whose worker died is taken back by the reaper once the claim's lease,
which the running task renews, has run out.

The worker runs this same app with its tasks added (worker/app.py); nothing
here imports the worker.
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, get_args

from celery import Celery

from shared.schemas import ModelType
from shared.settings import Settings, get_settings

MODEL_TYPES: tuple[str, ...] = get_args(ModelType)


def queue_for(model_type: str, settings: Settings | None = None) -> str:
    """The queue of a model type's jobs, so that an operator can run heavy
    models on machines of their own (`itemflow worker --queues stt`)."""
    return f"{(settings or get_settings()).queue_name}.{model_type}"


def celery_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "broker_url": settings.effective_broker_url,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "task_default_queue": settings.queue_name,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Without the broker connection a running task could not be
        # acknowledged, and its message goes to another worker: stop the run
        # rather than let two of them go on. Its job is taken back when its
        # lease runs out.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_soft_time_limit_seconds,
        "task_time_limit": settings.task_time_limit_seconds,
        # Events for Flower: workers send them, and so does the sender.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout_seconds,
        },
    }
    if settings.is_embedded_broker:
        folder = settings.broker_folder
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for model_type in MODEL_TYPES:
            _bind_once(folder / "control", queue_for(model_type, settings))
        config["broker_transport_options"].update(
            {
                "data_folder_in": str(folder / "queue"),
                "data_folder_out": str(folder / "queue"),
                "processed_folder": str(folder / "processed"),
                "control_folder": str(folder / "control"),
                "store_processed": False,
                # The folder is polled; once a second (the default) makes every
                # job wait half a second on average before it starts.
                "polling_interval": 0.25,
            }
        )
    if settings.worker_concurrency:
        config["worker_concurrency"] = settings.worker_concurrency
    return config


def _bind_once(control: Path, queue: str) -> None:
    """Write the filesystem transport's binding of a job queue to its
    exchange, whole, if no process has yet. kombu creates the file empty and
    then locks it, and a process starting at that moment reads it empty and
    fails to send (JSONDecodeError); a file that already holds the binding
    is only read."""
    target = control / f"{queue}.exchange"
    if target.exists():
        return
    with tempfile.NamedTemporaryFile("w", dir=control, suffix=".tmp", delete=False) as staged:
        # As kombu writes it: (routing key, pattern, queue).
        staged.write(json.dumps([[queue, "", queue]]))
    try:
        os.link(staged.name, target)  # fails if another process was first
    except FileExistsError:
        pass
    finally:
        os.unlink(staged.name)


def make_celery(settings: Settings | None = None) -> Celery:
    app = Celery("itemflow")
    app.conf.update(celery_config(settings or get_settings()))
    return app


@lru_cache
def celery_app() -> Celery:
    """This process's app, built when first asked for (which creates the
    embedded broker's folders), not when this module is imported."""
    return make_celery()

"""Sending job messages to the workers, by task name, so that the API never
imports task code. Messages carry ids only; the worker reads the rest from
the database.

Each model type has a queue of its own (`itemflow.ocr`, `itemflow.llm`, ...),
so that an operator can run heavy models on machines of their own with
`itemflow worker --queues stt`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import get_args

from shared.broker import celery_app
from shared.schemas import ModelType
from shared.settings import Settings, get_settings

TASK_NAME = "itemflow.run_post_processor"
MODEL_TYPES: tuple[str, ...] = get_args(ModelType)


@dataclass(frozen=True)
class JobMessage:
    job_id: str
    item_id: str
    # Not needed to run the job: carried so that Flower shows them.
    post_processor: str
    model_type: str


def queue_for(model_type: str, settings: Settings | None = None) -> str:
    return f"{(settings or get_settings()).queue_name}.{model_type}"


def send(message: JobMessage, countdown: float = 0) -> None:
    soft, hard = get_settings().time_limits_for(message.model_type)
    celery_app().send_task(
        TASK_NAME,
        kwargs=asdict(message),
        queue=queue_for(message.model_type),
        countdown=countdown or None,
        soft_time_limit=soft,
        time_limit=hard,
        ignore_result=True,
    )

"""Sending job messages to the workers, by task name, so that the API never
imports task code. Messages carry ids only; the worker reads the rest from
the database."""

from __future__ import annotations

from dataclasses import asdict, dataclass

TASK_NAME = "itemflow.run_post_processor"


@dataclass(frozen=True)
class JobMessage:
    job_id: str
    item_id: str
    # Carried for operators: Flower shows it in its task list.
    post_processor: str


def send(message: JobMessage, countdown: float = 0) -> None:
    from worker.app import celery_app

    celery_app.send_task(
        TASK_NAME,
        kwargs=asdict(message),
        countdown=countdown or None,
        ignore_result=True,
    )

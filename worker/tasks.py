"""Celery tasks: thin shells around the services."""

from __future__ import annotations

import uuid

from shared.queue import TASK_NAME
from shared.services.execution import run_job
from worker.app import celery_app


@celery_app.task(name=TASK_NAME, ignore_result=True)
def run_post_processor(job_id: str, item_id: str = "", post_processor: str = "") -> str:
    """Run one post-processor job. `item_id` and `post_processor` are not
    needed to run it; they are in the message so that Flower shows them."""
    return run_job(uuid.UUID(job_id)).status

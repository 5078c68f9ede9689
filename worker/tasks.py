"""Celery tasks: thin shells around the services."""

from __future__ import annotations

import logging
import uuid

from celery.signals import worker_process_init

from shared.db import get_engine
from shared.postprocessors.registry import get_registry
from shared.queue import TASK_NAME
from shared.services.execution import run_job
from shared.settings import get_settings
from worker.app import celery_app


@celery_app.task(name=TASK_NAME, ignore_result=True)
def run_post_processor(job_id: str, item_id: str = "", post_processor: str = "") -> str:
    """Run one post-processor job. `item_id` and `post_processor` are not
    needed to run it; they are in the message so that Flower shows them."""
    return run_job(uuid.UUID(job_id)).status


@worker_process_init.connect
def prepare_process(**_: object) -> None:
    """In each worker process as it starts: drop database connections
    inherited through fork (two processes must never share one), and load
    the models now rather than in the first job (OCR takes seconds)."""
    get_engine().dispose(close=False)
    if get_settings().preload_models:
        try:
            get_registry().warm_up()
        except Exception:
            # A model that cannot load fails its jobs with the reason; the
            # process must still start and serve the other models.
            logging.getLogger(__name__).exception("loading the models failed")

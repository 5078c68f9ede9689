"""The Celery app a worker runs: the broker's app (shared/broker.py, where
its delivery settings are explained) with the worker's tasks added."""

from __future__ import annotations

from shared.broker import celery_app as broker_app
from worker.timers import DropCancelledTimers

celery_app = broker_app()
celery_app.conf.include = ["worker.tasks"]
celery_app.steps["worker"].add(DropCancelledTimers)

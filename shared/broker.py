"""The broker, as every part of itemflow reaches it: Celery's configuration,
read from the settings, and the app that sends job messages (from the API,
the reaper and the jobs service) and checks the broker answers.

Delivery is at least once. A message is acknowledged only after its task
ran (acks_late), and given back if the worker process dies mid-task before
its job was claimed (reject_on_worker_lost). Each worker process reserves
one message at a time (prefetch 1), so a slow job does not hold others
hostage. Running a job twice is harmless: the claim in the database lets
only one run count. A job whose pool process died is taken back at once by
the worker's main process (worker/requests.py); one whose whole worker died
by the reaper, once the claim's lease, which the running task renews, has
run out.

On RabbitMQ the job queues are quorum queues (replicated, durable), every
publish waits for the broker's confirm, and a delayed message (a retry's
back-off) waits in RabbitMQ itself, in Celery's "native delayed delivery"
queues, not in a worker's memory: a worker that dies or restarts during a
back-off loses nothing, and a waiting message holds no worker's prefetch.

The worker runs this same app with its tasks added (worker/app.py); nothing
here imports the worker.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, get_args

from celery import Celery
from celery.signals import worker_init
from kombu.transport.native_delayed_delivery import (
    bind_queue_to_native_delayed_delivery_exchange,
    declare_native_delayed_delivery_exchanges_and_queues,
)

from shared.schemas import ModelType
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)
MODEL_TYPES: tuple[str, ...] = get_args(ModelType)
# The queue of every job whose model calls an external provider (an LLM):
# such a job waits on the network, not a core, and runs in a worker's pool
# of threads, many at once, not in a process of its own.
EXTERNAL = "external"
QUEUES: tuple[str, ...] = (*MODEL_TYPES, EXTERNAL)
TASK_NAME = "itemflow.run_post_processor"


def queue_for(name: str, settings: Settings | None = None) -> str:
    """The queue of a model type's jobs (or the external ones), so that an
    operator can run heavy models on machines of their own (`itemflow
    worker --queues stt`)."""
    return f"{(settings or get_settings()).queue_name}.{name}"


def job_queue(model_type: str, model_id: str = "", settings: Settings | None = None) -> str:
    """The queue a post-processor's jobs go to."""
    # Imported here: loading the models' classes is for senders, not for
    # every user of the broker's settings.
    from shared.inference.registry import get_registry

    external = get_registry().calls_out(model_type, model_id)
    return queue_for(EXTERNAL if external else model_type, settings)


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
        # How long the main process waits, after a pool process died, for a
        # result the process may have sent before dying, before it calls
        # the task lost (Celery's default: 10 s). A job's outcome is in the
        # database, not in that result: waiting only delays the take-back.
        "worker_lost_wait": 1.0,
        # Without the broker connection a running task could not be
        # acknowledged, and its message goes to another worker: stop the run
        # rather than let two of them go on. Its job is taken back when its
        # lease runs out.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_soft_time_limit_seconds,
        "task_time_limit": settings.task_time_limit_seconds,
        # Events for Flower, from the workers: a task shows from the moment a
        # worker receives it, with its arguments. Senders send none: a
        # task-sent event cost each upload a second publish and a third of
        # its send's CPU, and showed nothing a queue's length does not
        # (Flower's Broker page).
        "worker_send_task_events": True,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        # A job message goes to its model type's queue however it is sent,
        # also when Celery sends it again itself (a retry while the database
        # is down), which would otherwise follow the default queue's route.
        "task_routes": (partial(route_job_message, settings=settings),),
        "broker_transport_options": {
            "visibility_timeout": settings.visibility_timeout_seconds,
        },
    }
    if settings.is_rabbitmq_broker:
        config.update(rabbitmq_config())
    if settings.is_embedded_broker:
        folder = settings.broker_folder
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for name in QUEUES:
            _bind_once(folder / "control", queue_for(name, settings))
        # kombu's filesystem transport, with whole messages only.
        config["broker_transport"] = "shared.embedded_broker:Transport"
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


def rabbitmq_config() -> dict[str, Any]:
    """Quorum queues, as Celery's RabbitMQ guide has them."""
    return {
        # Every queue Celery declares, on send and on consume: the default
        # queue and the job queues, made when first named (`queue_for`).
        "task_default_queue_type": "quorum",
        "task_create_missing_queue_type": "quorum",
        # Native delayed delivery routes a delayed message back to its queue
        # through a topic exchange; on a direct one, Celery would hand the
        # message to a worker that holds it until its time.
        "task_default_exchange_type": "topic",
        "task_create_missing_queue_exchange_type": "topic",
        "broker_native_delayed_delivery_queue_type": "quorum",
        # Quorum queues have no global QoS: each consumer gets its own
        # prefetch (worker_prefetch_multiplier x concurrency, still 1 each).
        "worker_detect_quorum_queues": True,
        # A send returns once RabbitMQ has the message (publisher confirms),
        # so a refused or lost publish raises and is sent again
        # (shared/queue.py). The visibility timeout is Redis's alone: RabbitMQ
        # redelivers when the consumer's connection goes.
        "broker_transport_options": {"confirm_publish": True},
    }


def route_job_message(
    name: str,
    args: Any,
    kwargs: dict[str, Any] | None,
    options: Any,
    settings: Settings | None = None,
    **_: Any,
) -> dict[str, Any] | None:
    """Celery's router: a queue named in the send still wins."""
    if name == TASK_NAME and kwargs and kwargs.get("model_type") in MODEL_TYPES:
        return {"queue": job_queue(kwargs["model_type"], kwargs.get("model_id", ""), settings)}
    return None


def countdown_for(queue: str, seconds: float) -> float | None:
    """The countdown to send a message to `queue` with, to wait `seconds`.

    RabbitMQ delays by whole seconds (Celery truncates, and refuses less
    than one): rounded up, so that a back-off never ends early. The delay
    queues and the queue's binding are declared here too, once per process,
    so that the first sender need not wait for a worker to declare them."""
    if seconds <= 0:
        return None
    if not get_settings().is_rabbitmq_broker:
        return seconds
    _declare_delayed_delivery(queue)
    return float(math.ceil(seconds))


@lru_cache
def _declare_delayed_delivery(queue: str) -> None:
    """What Celery's worker declares as it starts (its DelayedDelivery
    step), for one queue, declared as Celery declares it on a send."""
    app = celery_app()
    job_queue = app.amqp.queues[queue]
    with app.connection_for_write() as connection:
        declare_native_delayed_delivery_exchanges_and_queues(
            connection, app.conf.broker_native_delayed_delivery_queue_type
        )
        job_queue.bind(connection.default_channel).declare()
        bind_queue_to_native_delayed_delivery_exchange(connection, job_queue)


def _declare_the_default_queue(sender: Any = None, **_: Any) -> None:
    """A worker starting on RabbitMQ binds every queue its app knows to the
    delayed delivery exchange, the default queue too, which no worker
    consumes and so no worker declares: the bind would fail, and Celery
    report native delayed delivery unavailable. Declared here, it binds."""
    app = getattr(sender, "app", None)
    if app is None or app.conf.task_default_queue_type != "quorum":
        return
    try:
        with app.connection_for_write() as connection:
            app.amqp.queues[app.conf.task_default_queue](connection.default_channel).declare()
    except Exception:
        log.warning("declaring the default queue failed", exc_info=True)


worker_init.connect(_declare_the_default_queue, weak=False)


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

"""On RabbitMQ, every queue itemflow's jobs go through is a durable quorum
queue: the job queues, declared by the API as it sends and by the worker as
it consumes, and Celery's delay queues. Read from `rabbitmqctl`, the only
way to see a queue's type without the management plugin."""

from __future__ import annotations

import os

import pytest

from shared.broker import MODEL_TYPES
from tests import rabbitmq
from tests.builders import make_dataset, make_post_processor, wait_for_jobs
from tests.conftest import BACKEND, BROKER
from tests.worker.test_jobs import uploaded_item

pytestmark = [
    pytest.mark.skipif(
        BACKEND != "services" or BROKER != "RabbitMQ", reason="the run's broker is not RabbitMQ"
    ),
    pytest.mark.skipif(
        rabbitmq.RABBITMQCTL is None, reason="no rabbitmqctl here to list the queues with"
    ),
    pytest.mark.usefixtures("worker"),
]


def test_the_job_queues_are_durable_quorum_queues_after_a_job_ran(client):
    dataset = make_dataset(client)
    make_post_processor(client, dataset, name="entities", model_type="ner")
    [job] = wait_for_jobs(client, dataset, uploaded_item(client, dataset))
    assert job["status"] == "completed", job

    queues = rabbitmq.queue_types(os.environ["BROKER_URL"])

    prefix = os.environ["QUEUE_NAME"]
    print("\n" + "\n".join(f"{name}\t{kind}" for name, (kind, _) in sorted(queues.items())))
    job_queues = {f"{prefix}.{model_type}" for model_type in MODEL_TYPES}
    assert job_queues <= queues.keys()
    assert {queues[name] for name in job_queues} == {("quorum", "true")}
    delay_queues = {name for name in queues if name.startswith("celery_delayed_")}
    assert len(delay_queues) == 28
    assert {queues[name] for name in delay_queues} == {("quorum", "true")}

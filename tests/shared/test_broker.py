"""The broker's configuration and the app that sends job messages."""

import json
import subprocess
import sys

import pytest

from shared.broker import QUEUES, celery_app, celery_config, make_celery, queue_for
from shared.settings import Settings
from tests.fixtures import ROOT


def test_delivery_is_at_least_once():
    conf = celery_app().conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.broker_transport_options["visibility_timeout"] == 3600


def test_workers_send_events_for_flower_and_senders_none():
    assert celery_app().conf.worker_send_task_events is True
    assert celery_app().conf.task_send_sent_event is False


def test_the_visibility_timeout_is_a_setting(tmp_path):
    config = celery_config(Settings(var_dir=tmp_path, visibility_timeout_seconds=7200))
    assert config["broker_transport_options"]["visibility_timeout"] == 7200


def test_each_model_type_has_a_queue_of_its_own_and_the_external_calls_one():
    settings = Settings(queue_name="itemflow")
    assert [queue_for(name, settings) for name in QUEUES] == [
        "itemflow.stt",
        "itemflow.stt-diarization",
        "itemflow.classification",
        "itemflow.detection",
        "itemflow.ner",
        "itemflow.ocr",
        "itemflow.llm",
        "itemflow.external",
    ]


def test_sending_needs_nothing_of_the_worker_and_importing_builds_nothing(tmp_path):
    """The API and the reaper send without the worker's code, and importing
    the sending side neither builds an app nor makes broker folders."""
    script = (
        "import sys, shared.queue, api.app\n"
        "from pathlib import Path\n"
        "assert not any(name.startswith('worker') for name in sys.modules), sys.modules\n"
        "assert not (Path(sys.argv[1]) / 'broker').exists()\n"
    )
    env = {"VAR_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, env=env, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_a_worker_without_its_broker_stops_its_runs():
    """Their messages go to other workers; their leases bring the jobs back."""
    assert celery_app().conf.worker_cancel_long_running_tasks_on_connection_loss is True


def test_the_embedded_broker_binds_each_job_queue_whole_before_anything_sends(tmp_path):
    """kombu's filesystem transport creates an exchange's file empty, then
    locks it and writes the binding: a process sending at that moment read
    the file empty and failed. Written whole beforehand, it is only read."""
    # The embedded broker, also on a run whose BROKER_URL names another.
    settings = Settings(var_dir=tmp_path, queue_name="fresh", broker_url="")
    celery_config(settings)
    control = tmp_path / "broker" / "control"
    files = {path.name: json.loads(path.read_text()) for path in control.iterdir()}
    assert files == {
        f"fresh.{name}.exchange": [[f"fresh.{name}", "", f"fresh.{name}"]] for name in QUEUES
    }

    app = make_celery(settings)
    app.send_task("itemflow.run_post_processor", kwargs={}, queue="fresh.ocr")
    celery_config(settings)  # another process starting

    assert json.loads((control / "fresh.ocr.exchange").read_text()) == files["fresh.ocr.exchange"]
    assert len(list((tmp_path / "broker" / "queue" / "fresh.ocr").iterdir())) == 1


RABBITMQ = "amqp://guest:guest@rabbitmq-host:5672//"


def test_rabbitmq_gets_quorum_queues_and_publisher_confirms(tmp_path):
    config = celery_config(Settings(var_dir=tmp_path, broker_url=RABBITMQ))
    assert config["task_default_queue_type"] == "quorum"
    assert config["task_create_missing_queue_type"] == "quorum"
    assert config["worker_detect_quorum_queues"] is True
    # Redis's visibility timeout means nothing to RabbitMQ.
    assert config["broker_transport_options"] == {"confirm_publish": True}
    assert config["task_acks_late"] is True
    assert config["worker_prefetch_multiplier"] == 1


def test_on_rabbitmq_every_queue_is_declared_durable_quorum_on_a_topic_exchange(tmp_path):
    """As the API declares a job queue on sending and a worker on consuming
    (`--queues`), and the default queue; a topic exchange, so that native
    delayed delivery can route a back-off's message back to its queue."""
    settings = Settings(var_dir=tmp_path, broker_url=RABBITMQ, queue_name="site")
    queues = make_celery(settings).amqp.queues
    for name in ["site", *(queue_for(queue, settings) for queue in QUEUES)]:
        queue = queues[name]
        assert queue.queue_arguments == {"x-queue-type": "quorum"}, name
        assert queue.durable and not queue.auto_delete, name
        assert queue.exchange.type == "topic", name


def test_a_job_message_goes_to_its_model_types_queue_also_when_celery_resends_it(tmp_path):
    """Celery's own retry (the database down) names no queue: routed, it
    goes to the model type's queue, not the default one."""
    settings = Settings(var_dir=tmp_path, broker_url=RABBITMQ, queue_name="site")
    router = make_celery(settings).amqp.router
    message = {"job_id": "j", "item_id": "i", "post_processor": "p", "model_type": "ocr"}
    assert router.route({}, "itemflow.run_post_processor", (), message)["queue"].name == "site.ocr"
    named = router.route({"queue": "site.llm"}, "itemflow.run_post_processor", (), message)
    assert named["queue"].name == "site.llm"


@pytest.mark.parametrize(
    ("model_type", "model_id", "queue"),
    [
        ("llm", "", "site.external"),
        ("ner", "llm", "site.external"),
        ("ner", "", "site.ner"),
        ("llm", "no-such-model", "site.llm"),  # fails at once, on any worker
    ],
)
def test_the_jobs_of_models_that_call_a_provider_go_to_the_external_queue(
    tmp_path, model_type, model_id, queue
):
    """They wait on the network: a worker's pool of threads runs many at once."""
    settings = Settings(var_dir=tmp_path, broker_url=RABBITMQ, queue_name="site")
    router = make_celery(settings).amqp.router
    message = {"job_id": "j", "model_type": model_type, "model_id": model_id}
    assert router.route({}, "itemflow.run_post_processor", (), message)["queue"].name == queue


def test_on_rabbitmq_a_queue_name_must_be_one_routing_word(tmp_path):
    for name in ("site.eu", "site*", "site#"):
        with pytest.raises(ValueError, match="QUEUE_NAME"):
            Settings(var_dir=tmp_path, broker_url=RABBITMQ, queue_name=name)
    Settings(var_dir=tmp_path, broker_url="redis://host:6379/0", queue_name="site.eu")


def test_on_the_embedded_broker_a_message_appears_in_its_queue_only_whole(tmp_path, monkeypatch):
    """kombu's filesystem transport creates a message's file, then writes
    it: a worker listing the folder in between took it empty, and its
    consumer stopped on the JSONDecodeError."""
    from kombu.transport import filesystem as kombu_filesystem

    from shared import embedded_broker

    queue = tmp_path / "broker" / "queue" / "whole.ocr"
    visible_while_written: list[str] = []

    def look_while_writing(payload):
        visible_while_written.extend(path.name for path in queue.parent.glob("**/*.msg"))
        return json.dumps(payload)

    # Whichever transport writes it, kombu's or ours.
    monkeypatch.setattr(kombu_filesystem, "dumps", look_while_writing)
    monkeypatch.setattr(embedded_broker, "dumps", look_while_writing)
    app = make_celery(Settings(var_dir=tmp_path, broker_url="", queue_name="whole"))

    app.send_task("itemflow.run_post_processor", kwargs={"job_id": "j"}, queue="whole.ocr")

    assert visible_while_written == []
    [message] = queue.iterdir()
    assert message.name.endswith(".msg")
    assert json.loads(message.read_text())["headers"]["task"] == "itemflow.run_post_processor"

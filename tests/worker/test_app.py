from shared.queue import TASK_NAME
from shared.settings import Settings
from worker.app import celery_app, celery_config


def test_delivery_is_at_least_once():
    conf = celery_app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.broker_transport_options["visibility_timeout"] == 3600


def test_workers_send_events_for_flower():
    assert celery_app.conf.worker_send_task_events is True
    assert celery_app.conf.task_send_sent_event is True


def test_the_task_has_a_readable_name():
    import worker.tasks  # noqa: F401 - registers the task

    assert TASK_NAME == "itemflow.run_post_processor"
    assert TASK_NAME in celery_app.tasks


def test_the_visibility_timeout_is_a_setting(tmp_path):
    config = celery_config(Settings(var_dir=tmp_path, visibility_timeout_seconds=7200))
    assert config["broker_transport_options"]["visibility_timeout"] == 7200


def test_each_model_type_has_a_queue_of_its_own():
    from shared.queue import MODEL_TYPES, queue_for

    settings = Settings(queue_name="itemflow")
    assert [queue_for(model_type, settings) for model_type in MODEL_TYPES] == [
        "itemflow.stt",
        "itemflow.stt-diarization",
        "itemflow.classification",
        "itemflow.detection",
        "itemflow.ner",
        "itemflow.ocr",
        "itemflow.llm",
    ]


def test_time_limits_are_set_per_model_type():
    settings = Settings(time_limits={"stt": (1800, 2400)}, visibility_timeout_seconds=3600)
    assert settings.time_limits_for("stt") == (1800, 2400)
    assert settings.time_limits_for("ocr") == (600, 900)


def test_a_visibility_timeout_shorter_than_a_run_is_refused():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="VISIBILITY_TIMEOUT_SECONDS"):
        Settings(time_limits={"stt": (3000, 3600)}, visibility_timeout_seconds=3600)


def test_a_worker_for_unknown_model_types_refuses_to_start(capsys):
    from shared.cli import main

    assert main(["worker", "--queues", "ocr,speech"]) == 2
    assert "unknown model types ['speech']" in capsys.readouterr().err

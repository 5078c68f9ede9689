from shared.broker import celery_app as broker_app
from shared.queue import TASK_NAME
from worker.app import celery_app


def test_the_worker_runs_the_brokers_app_with_its_tasks():
    import worker.tasks  # noqa: F401 - registers the task

    assert celery_app is broker_app()
    assert TASK_NAME == "itemflow.run_post_processor"
    assert TASK_NAME in celery_app.tasks


def test_a_worker_for_unknown_model_types_refuses_to_start(capsys):
    from shared.cli import main

    assert main(["worker", "--queues", "ocr,speech"]) == 2
    assert "unknown queues ['speech']" in capsys.readouterr().err

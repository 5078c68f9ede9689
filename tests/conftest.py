"""Test set-up: one database and broker per run, a real API server and a
real Celery worker process, and a fresh user for every test.

The backend is chosen by ITEMFLOW_TEST_BACKEND (set by `make test`):
"services" uses the local PostgreSQL and Redis (or the RabbitMQ that
TEST_BROKER_URL names, amqp://..., on a virtual host of the run's own),
"embedded" uses SQLite and the filesystem broker in a temporary directory.
Settings are read from the environment, so it is set here before any
itemflow module is imported.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tests import rabbitmq

BACKEND = os.environ.get("ITEMFLOW_TEST_BACKEND", "embedded")
VAR_DIR = Path(tempfile.mkdtemp(prefix="itemflow-test-"))
STATE_DIR = VAR_DIR / "plugin-state"
STATE_DIR.mkdir()
(VAR_DIR / "metrics").mkdir()
ADMIN_DATABASE_URL = os.environ.get(
    "TEST_ADMIN_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# Per run, so that two runs never share a database, queue or virtual host:
# the process id tells apart the runs on one machine, the random part those
# of machines (or containers) that share the services.
RUN_ID = f"{os.getpid()}_{os.urandom(3).hex()}"
TEST_DATABASE = f"itemflow_test_{RUN_ID}"
OWN_VHOST = f"itemflow-test-{RUN_ID}"

os.environ.update(
    {
        "VAR_DIR": str(VAR_DIR),
        "POST_PROCESSORS": (
            "tests.plugins:FlakyModel,tests.plugins:RejectingModel,tests.plugins:SlowModel"
        ),
        # For the slow test model; the rule-based NER runs in milliseconds.
        "TIME_LIMITS": '{"ner": [2, 4]}',
        "ITEMFLOW_TEST_STATE_DIR": str(STATE_DIR),
        # The API in this process counts in files, as `itemflow api` does,
        # and its /metrics sums the test workers' files there too.
        "PROMETHEUS_MULTIPROC_DIR": str(VAR_DIR / "metrics"),
        # Short back-offs keep the retry tests quick.
        "RETRY_BACKOFF_SECONDS": "0.2",
        "RETRY_BACKOFF_MAX_SECONDS": "1",
        "WORKER_CONCURRENCY": "2",
        # The suite sends many bad keys from one address on purpose; the
        # limit itself has a test of its own.
        "AUTH_FAILURES_PER_MINUTE": "1000000",
        "QUEUE_NAME": f"itemflow-test-{RUN_ID}",
        # The local provider servers of the LLM tests listen on 127.0.0.1.
        "PROVIDER_ALLOWED_HOSTS": "127.0.0.1",
    }
)
# What a worker could leak: the tests check none of it leaves the machine.
for variable in (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "PROVIDERS",
    "PROVIDERS_FILE",
    "SECRETS_KEY",
):
    os.environ.pop(variable, None)
if BACKEND == "services":
    os.environ["DATABASE_URL"] = ADMIN_DATABASE_URL.rsplit("/", 1)[0] + "/" + TEST_DATABASE
    os.environ["BROKER_URL"] = os.environ.get("TEST_BROKER_URL", "redis://127.0.0.1:6379/15")
    if rabbitmq.is_rabbitmq(os.environ["BROKER_URL"]):
        os.environ["BROKER_URL"] = rabbitmq.own_vhost(os.environ["BROKER_URL"], OWN_VHOST)
else:
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("BROKER_URL", None)

# The in-process API's waits on the database bounded as `itemflow api`
# bounds them (spawned processes read the same setting), with a lock
# timeout that a test can wait out.
os.environ["API_LOCK_TIMEOUT_SECONDS"] = "3"

pytest_plugins = ["tests.fixtures"]
BROKER = "RabbitMQ" if rabbitmq.is_rabbitmq(os.environ.get("BROKER_URL", "")) else "Redis"


def pytest_unconfigure() -> None:
    """The run's RabbitMQ virtual host goes with everything in it (on
    Redis, the database fixture deletes the run's keys)."""
    if BACKEND == "services" and OWN_VHOST in os.environ.get("BROKER_URL", ""):
        rabbitmq.delete_vhost(OWN_VHOST)


def pytest_report_header() -> str:
    if BACKEND == "services":
        return (
            f"itemflow backend: PostgreSQL ({os.environ['DATABASE_URL']}) "
            f"and {BROKER} ({os.environ['BROKER_URL']})"
        )
    return f"itemflow backend: embedded (SQLite and filesystem broker in {VAR_DIR})"

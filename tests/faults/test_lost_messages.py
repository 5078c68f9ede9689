"""An upload whose job message never reaches the broker (the broker is down,
or the API dies, between the commit and the send): the upload and its job
are kept, and the reaper sends the message later.

The API runs with a broker URL nobody listens on, so that every send after
a commit fails, or with one that accepts connections and never answers, so
that it can be killed while it sends; the worker and the reaper use the
real broker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.builders import item_path, make_dataset, make_item, make_post_processor, ok, upload
from tests.conftest import VAR_DIR
from tests.faults.stack import own_broker, running_api, wait_for_status
from tests.fixtures import (
    free_port,
    itemflow,
    spawn,
    stop,
    wait_for_http,
    wait_for_worker,
    wait_until,
)

PENDING_AFTER = 2.0
ENV = {
    # Longer than the tests' 1 s back-off cap, as the settings require.
    "REAPER_PENDING_AFTER_SECONDS": str(PENDING_AFTER),
    "REAPER_INTERVAL_SECONDS": "0.5",
    "PRELOAD_MODELS": "false",
}
ENV.update(own_broker("lost"))


def broker_at(port: int) -> str:
    """A broker URL of the run's kind (RabbitMQ or Redis) at a port of ours."""
    if os.environ.get("BROKER_URL", "").startswith("amqp://"):
        return f"amqp://guest:guest@127.0.0.1:{port}//"
    return f"redis://127.0.0.1:{port}/0"


DEAD_BROKER = broker_at(1)


@pytest.fixture(scope="module")
def api() -> Iterator[httpx.Client]:
    with running_api(ENV, "lost", reaper=False, api_env={"BROKER_URL": DEAD_BROKER}) as client:
        yield client


def test_a_job_whose_message_was_lost_is_sent_by_the_reaper(api):
    dataset = make_dataset(api)
    make_post_processor(
        api, dataset, name="flaky", model_type="classification", model_id="test-flaky"
    )
    item = make_item(api, dataset)

    ok(upload(api, dataset, item, b"some text\n", "a.txt"))  # kept, though not sent
    uploaded = time.monotonic()
    [job] = ok(api.get(item_path(dataset, item) + "/jobs"))
    assert (job["status"], job["attempts"]) == ("pending", 0)

    # The broker "comes back": a worker and a reaper on the real one.
    worker = spawn("worker", "--name=lost@%h", log_name="lost-worker", **ENV)
    reaper = spawn("reaper", log_name="lost-reaper", **ENV)
    try:
        wait_for_worker(worker, "lost-worker")
        job = wait_for_status(api, dataset, item, "completed", timeout=PENDING_AFTER + 20)
        print(f"\nupload with its message lost -> completed {time.monotonic() - uploaded:.1f} s")
    finally:
        stop(worker)
        stop(reaper)
    assert job["attempts"] == 1
    # Only the reaper could have sent it: the API's own send failed.
    assert "event=job.resent" in (VAR_DIR / "lost-reaper.log").read_text()


@pytest.fixture
def silent_broker() -> Iterator[tuple[str, list[socket.socket]]]:
    """A TCP server that accepts connections and never answers: a send to it
    hangs after the commit, as on a broker that stopped responding."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield broker_at(server.getsockname()[1]), accepted
    done.set()
    thread.join(timeout=5)
    server.close()
    for connection in accepted:
        connection.close()


def test_an_api_killed_between_commit_and_send_loses_no_job(silent_broker):
    broker_url, accepted = silent_broker
    port = free_port()
    key = itemflow("users", "create", f"killed-{os.urandom(4).hex()}", env=ENV).strip()
    headers = {"Authorization": f"Bearer {key}"}
    base = f"http://127.0.0.1:{port}"
    api = spawn("api", log_name="killed-api", API_PORT=str(port), **ENV, BROKER_URL=broker_url)
    client = httpx.Client(base_url=base + "/api/v1", headers=headers, timeout=30)
    try:
        wait_for_http(base + "/healthz")
        dataset = make_dataset(client)
        make_post_processor(
            client, dataset, name="flaky", model_type="classification", model_id="test-flaky"
        )
        item = make_item(client, dataset)
        # The upload commits, then hangs sending its message.
        answers: list[object] = []

        def send_upload() -> None:
            try:
                answers.append(upload(client, dataset, item, b"some text\n", "a.txt"))
            except httpx.TransportError as error:
                answers.append(error)

        hanging = threading.Thread(target=send_upload, daemon=True)
        hanging.start()
        jobs = item_path(dataset, item) + "/jobs"
        wait_until(lambda: ok(client.get(jobs)), 15, "the upload committed")
        wait_until(lambda: accepted, 15, "the API connected to the broker")
        assert hanging.is_alive()

        os.kill(api.pid, signal.SIGKILL)
        killed = time.monotonic()
        api.wait(timeout=10)
        hanging.join(timeout=10)
        # The client saw the connection drop, never an answer.
        assert [type(answer) for answer in answers] == [httpx.RemoteProtocolError]
    finally:
        stop(api)
        client.close()

    # Everything else comes back on the real broker; the API too.
    processes = [
        spawn("api", log_name="killed-api-2", API_PORT=str(port), **ENV),
        spawn("worker", "--name=killed@%h", log_name="killed-worker", **ENV),
        spawn("reaper", log_name="killed-reaper", **ENV),
    ]
    try:
        wait_for_http(base + "/healthz")
        with httpx.Client(base_url=base + "/api/v1", headers=headers, timeout=30) as client:
            job = wait_for_status(client, dataset, item, "completed", timeout=PENDING_AFTER + 30)
            delay = time.monotonic() - killed
            print(f"\nAPI SIGKILLed while sending -> job completed {delay:.1f} s")
            assert ok(client.get(item_path(dataset, item)))["name"] == item["name"]
    finally:
        for process in processes:
            stop(process)
    assert job["attempts"] == 1
    assert "event=job.resent" in (VAR_DIR / "killed-reaper.log").read_text()

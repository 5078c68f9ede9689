"""Sending job messages: a send the broker refuses is tried again soon from
this process, not left to the reaper's ten-minute sweep."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from shared import queue
from tests.fixtures import wait_until

MESSAGE = queue.JobMessage(job_id="j", item_id="i", post_processor="p", model_type="ocr")


@pytest.fixture
def broker(monkeypatch):
    """A broker that refuses the first `refusals[0]` sends (as kombu's
    filesystem transport did when it read an exchange file another process
    had just created empty), then takes them: what it took, with when."""
    refusals = [0]
    taken: list[tuple[queue.JobMessage, float, float]] = []
    lock = threading.Lock()

    def send(message, countdown=0):
        with lock:
            if refusals[0]:
                refusals[0] -= 1
                json.loads("")  # the JSONDecodeError kombu raised
            taken.append((message, countdown, time.monotonic()))

    monkeypatch.setattr(queue, "send", send)
    monkeypatch.setattr(queue, "_the_resender", None)
    yield refusals, taken
    # What still waits would go to the real broker once `send` is restored.
    if queue._the_resender is not None:
        with queue._the_resender._changed:
            queue._the_resender._waiting.clear()


def test_a_refused_send_goes_through_within_seconds(broker):
    refusals, taken = broker
    refusals[0] = 2
    started = time.monotonic()

    queue.send_soon(MESSAGE)

    wait_until(lambda: taken, 10, "the message was sent again")
    [(message, countdown, at)] = taken
    assert message == MESSAGE and countdown == 0
    # Tried again after 0.5 s, then 1 s.
    assert 1.4 < at - started < 5
    assert queue._resender().waiting() == 0


def test_a_refused_send_keeps_its_back_off(broker):
    refusals, taken = broker
    refusals[0] = 1

    queue.send_soon(MESSAGE, countdown=3)

    wait_until(lambda: taken, 10, "the message was sent again")
    [(_message, countdown, _at)] = taken
    # Sent again 0.5 s later, it waits only what is left of its 3 s.
    assert 2.0 < countdown < 2.6


def test_a_send_that_goes_through_is_sent_once(broker):
    _refusals, taken = broker

    queue.send_soon(MESSAGE)

    assert [message for message, _countdown, _at in taken] == [MESSAGE]
    assert queue._the_resender is None  # no thread was needed


def test_a_forked_child_does_not_send_its_parents_waiting_messages(broker):
    refusals, _taken = broker
    refusals[0] = 1000  # the broker stays down
    queue.send_soon(MESSAGE)
    assert queue._resender().waiting() == 1

    child = os.fork()
    if child == 0:  # the child, as a Celery pool process would be after a fork
        os._exit(0 if queue._the_resender is None else 1)
    _pid, status = os.waitpid(child, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert queue._resender().waiting() == 1  # the parent keeps its own

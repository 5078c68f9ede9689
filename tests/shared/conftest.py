"""Fixtures for service tests."""

from __future__ import annotations

import threading

import pytest

from shared import queue


@pytest.fixture
def sent(monkeypatch):
    """The messages that would have gone to the broker."""
    messages: list[queue.JobMessage] = []
    lock = threading.Lock()

    def record(message, countdown=0):
        with lock:
            messages.append(message)

    monkeypatch.setattr(queue, "send", record)
    return messages

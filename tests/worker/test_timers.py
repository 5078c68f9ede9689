import time
from types import SimpleNamespace

from kombu.asynchronous import Hub
from kombu.asynchronous.timer import Timer

from worker import timers
from worker.app import celery_app


def test_cancelled_entries_are_dropped_and_the_rest_fire_in_order():
    timer = Timer()
    fired: list[int] = []
    entries = [timer.call_after(0.01 * (n % 7), fired.append, (n,)) for n in range(100)]
    for entry in entries[::2]:
        entry.cancel()

    assert timers.drop_cancelled(timer) == 50
    assert len(timer) == 50
    time.sleep(0.1)
    for _delay, entry in timer:
        if entry is None:
            break
        timer.apply_entry(entry)
    assert sorted(fired) == list(range(1, 100, 2))
    assert fired == sorted(fired, key=lambda n: n % 7)
    assert timers.drop_cancelled(timer) == 0


def test_the_worker_drops_the_time_limits_of_finished_tasks_from_its_loop(monkeypatch):
    # As a prefork worker's main process times each task's limits: an entry
    # a task's soft limit away, cancelled when the task ends.
    monkeypatch.setattr(timers, "DROP_EVERY", 0.05)
    hub = Hub(Timer())
    try:
        timers.DropCancelledTimers(SimpleNamespace()).start(SimpleNamespace(hub=hub))
        for _ in range(1000):
            hub.call_later(600, print).cancel()
        running = hub.call_later(600, print)
        assert len(hub.timer) == 1002  # the cancelled ones, the running one, the drop

        time.sleep(0.1)
        hub.fire_timers()

        assert len(hub.timer) == 2
        assert not running.canceled
    finally:
        hub.close()


def test_the_step_is_in_the_workers_blueprint():
    assert timers.DropCancelledTimers in celery_app.steps["worker"]

"""SQLite's writers queue for the machine's lock: one transaction at a time,
across threads and processes, each woken as the one before it ends."""

from __future__ import annotations

import multiprocessing
import threading
import time

from shared.sqlite_lock import MachineLock, machine_lock


def test_threads_take_turns_and_a_thread_may_take_it_again(tmp_path):
    lock = MachineLock(str(tmp_path / "db.lock"))
    inside: list[int] = []
    overlaps: list[int] = []

    def transaction(number: int) -> None:
        with lock.held():
            inside.append(number)
            if len(inside) > 1:
                overlaps.append(number)
            with lock.held():  # a nested scope of the same thread
                time.sleep(0.005)
            inside.remove(number)

    threads = [threading.Thread(target=transaction, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert overlaps == []
    assert inside == []


def hold_then_report(database: str, started, released_at) -> None:
    started.set()
    # The lock object this process got from its parent, as a pool process does.
    with machine_lock(database).held():
        released_at.value = time.time()


def test_another_process_waits_for_the_holder_and_is_woken_when_it_ends(tmp_path):
    path = str(tmp_path / "itemflow.db")
    lock = machine_lock(path)
    context = multiprocessing.get_context("fork")
    started, got_it = context.Event(), context.Value("d", 0.0)
    with lock.held():
        # Forked while this process holds the lock: the child's copy of the
        # lock's file must not count as holding it.
        child = context.Process(target=hold_then_report, args=(path, started, got_it))
        child.start()
        assert started.wait(10)
        time.sleep(0.3)
        assert got_it.value == 0.0  # still waiting
        released = time.time()
    child.join(timeout=10)

    assert child.exitcode == 0
    assert 0 <= got_it.value - released < 0.1

"""The embedded broker's folders: a folder per queue, messages taken in
order and once, whatever the number of readers."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from kombu import Connection, Exchange, Queue

from shared.broker import celery_config
from shared.settings import Settings


def connection(var: Path) -> Connection:
    config = celery_config(Settings(var_dir=var, broker_url="", queue_name="site"))
    return Connection(
        transport=config["broker_transport"],
        transport_options=config["broker_transport_options"],
    )


def declare(conn: Connection, name: str) -> Queue:
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
    queue(conn.default_channel).declare()
    return queue


def test_each_queue_keeps_its_messages_in_a_folder_of_its_own_in_order(tmp_path):
    with connection(tmp_path) as conn:
        ocr, ner = declare(conn, "site.ocr"), declare(conn, "site.ner")
        producer = conn.Producer()
        for number in range(5):
            producer.publish({"n": number}, exchange=ocr.exchange, routing_key="site.ocr")
        producer.publish({"n": "ner"}, exchange=ner.exchange, routing_key="site.ner")

        folders = tmp_path / "broker" / "queue"
        assert len(list((folders / "site.ocr").glob("*.msg"))) == 5
        assert len(list((folders / "site.ner").glob("*.msg"))) == 1
        assert ocr(conn.default_channel).queue_declare(passive=True).message_count == 5

        taken = [ocr(conn.default_channel).get(no_ack=True).payload["n"] for _ in range(5)]
        assert taken == [0, 1, 2, 3, 4]
        assert ocr(conn.default_channel).get(no_ack=True) is None
        assert list((folders / "site.ocr").iterdir()) == []
        assert ner(conn.default_channel).purge() == 1


def test_readers_racing_for_one_queue_take_each_message_once(tmp_path):
    with connection(tmp_path) as sender:
        queue = declare(sender, "site.ocr")
        producer = sender.Producer()
        for number in range(300):
            producer.publish({"n": number}, exchange=queue.exchange, routing_key="site.ocr")

    taken: list[int] = []
    lock = threading.Lock()

    def read() -> None:
        with connection(tmp_path) as conn:
            bound = queue(conn.default_channel)
            while (message := bound.get(no_ack=True)) is not None:
                with lock:
                    taken.append(message.payload["n"])

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(timeout=60)

    assert sorted(taken) == list(range(300))


def test_messages_of_the_one_folder_of_an_earlier_release_are_moved_to_their_queue(tmp_path):
    folder = tmp_path / "broker" / "queue"
    folder.mkdir(parents=True)
    body = {"body": "", "headers": {}, "properties": {"delivery_tag": "t"}}
    (folder / f"1733000000000_{'a' * 8}.site.ocr.msg").write_text(json.dumps(body))

    with connection(tmp_path) as conn:
        queue = declare(conn, "site.ocr")
        assert queue(conn.default_channel).queue_declare(passive=True).message_count == 1
    assert [path.parent.name for path in folder.glob("**/*.msg")] == ["site.ocr"]

"""The embedded broker: kombu's filesystem transport, with a folder per
queue, each message written whole before it appears there, and served by
the worker's event loop.

- **A folder per queue.** kombu keeps every queue's messages in one folder
  and lists and sorts all of it to take one message of one queue: with a
  few hundred waiting, and a worker polling eight queues, that listing was
  most of the worker's main process's CPU. Here a queue's folder holds its
  messages only, and a reader lists it once for as many messages as it
  then takes (another reader may have taken some: its claim fails and it
  goes on).
- **Whole messages only.** kombu creates a message's file under its final
  name, then locks it and writes it. A worker listing the folder in between
  took the file empty and failed to decode it, which stopped its consumer
  (seen under 40 uploads a second, with a pool of threads polling beside
  the prefork worker). Written under a name no reader takes and then
  renamed, which is atomic within one filesystem, a message is seen whole
  or not at all.
- **Taken by a rename.** A reader claims a message by renaming it within
  its folder, atomic as well: two readers never both take it, and no copy
  to another filesystem is half done (kombu moved it to the temp folder).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
import uuid
from collections import deque
from queue import Empty
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps, loads

DRAIN_AT_MOST = 100
MESSAGE = ".msg"
_sent = itertools.count()


class Channel(filesystem.Channel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._folders: set[str] = set()
        # Per queue: names listed and not taken yet, oldest first.
        self._listed: dict[str, deque[str]] = {}
        self._move_flat_messages()

    def _folder(self, queue: str) -> str:
        folder = os.path.join(self.data_folder_in, queue.replace(os.sep, "_"))
        if folder not in self._folders:
            os.makedirs(folder, exist_ok=True)
            self._folders.add(folder)
        return folder

    # kombu's own signature, wider than its base class's.
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        folder = self._folder(queue)
        # The time first, so that the folder's order is the queue's, then
        # this process's count for messages sent within one clock tick.
        name = f"{time.time_ns():020d}_{next(_sent):012d}_{uuid.uuid4()}{MESSAGE}"
        staged = os.path.join(folder, f".{uuid.uuid4()}.staged")
        try:
            with open(staged, "wb") as file:
                file.write(dumps(payload).encode())  # type: ignore[no-untyped-call]
            os.replace(staged, os.path.join(folder, name))
        except OSError as error:
            raise ChannelError(f"Cannot add file {name!r} to {folder!r}") from error

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        folder = self._folder(queue)
        listed = self._listed.setdefault(queue, deque())
        # Names listed earlier first; once they are gone (taken, here or by
        # another reader), the folder is listed once more, and only once.
        relisted = False
        while True:
            if not listed:
                if relisted:
                    raise Empty()
                listed.extend(sorted(_messages(folder)))
                relisted = True
                continue
            name = listed.popleft()
            taken = os.path.join(folder, f".{name}.{uuid.uuid4()}.taken")
            try:
                os.rename(os.path.join(folder, name), taken)
            except OSError:
                continue  # another reader took it
            try:
                with open(taken, "rb") as file:
                    payload = file.read()
            finally:
                os.remove(taken)
            return loads(payload)  # type: ignore[no-untyped-call]

    def _size(self, queue: Any) -> int:
        return sum(1 for _ in _messages(self._folder(queue)))

    def _purge(self, queue: Any) -> int:
        folder, count = self._folder(queue), 0
        for name in _messages(folder):
            with contextlib.suppress(OSError):  # taken meanwhile
                os.remove(os.path.join(folder, name))
                count += 1
        self._listed.pop(queue, None)
        return count

    def _move_flat_messages(self) -> None:
        """Messages an earlier release left in the one folder of all queues
        ("<time>_<uuid>.<queue>.msg"), moved into their queue's folder."""
        root = self.data_folder_in
        with os.scandir(root) as entries:
            flat = [entry.name for entry in entries if entry.is_file()]
        for name in flat:
            queue = name.partition(".")[2].removesuffix(MESSAGE)
            if name.endswith(MESSAGE) and queue:
                with contextlib.suppress(OSError):  # another process moved it
                    os.rename(os.path.join(root, name), os.path.join(self._folder(queue), name))


def _messages(folder: str) -> list[str]:
    return [name for name in os.listdir(folder) if name.endswith(MESSAGE) and name[0] != "."]


class Transport(filesystem.Transport):
    """Served by the worker's event loop, as Redis and RabbitMQ are.

    kombu's filesystem transport only knows how to block: the worker then
    runs Celery's synchronous loop, whose prefork pool hands jobs to its
    processes through one shared pipe and lock. A pool process killed while
    it waits on that pipe holds the lock forever, and the worker serves
    nothing again (seen when every pool process was SIGKILLed). In the
    event loop each process has pipes of its own. There is no socket to
    watch: the folder is read on every turn of the loop (after each job
    ends, say, so the next starts at once) and every `polling_interval`
    seconds when nothing else happens."""

    Channel = Channel
    implements = filesystem.Transport.implements.extend(asynchronous=True)

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        self.unregister_from_event_loop(connection, loop)
        self._timer = loop.call_repeatedly(self.polling_interval, self._drain)
        loop.on_tick.add(self._drain)

    def unregister_from_event_loop(self, connection: Any, loop: Any) -> None:
        timer = getattr(self, "_timer", None)
        if timer is not None:
            timer.cancel()
            loop.on_tick.discard(self._drain)
            self._timer = None

    def _drain(self) -> None:
        """Deliver the messages waiting, as many as the consumers' prefetch
        takes (a full prefetch reads no folder)."""
        cycle = self.cycle
        assert cycle is not None  # made with the transport
        for _ in range(DRAIN_AT_MOST):
            try:
                cycle.get(self._deliver, timeout=0)  # type: ignore[no-untyped-call]
            except Empty:
                return

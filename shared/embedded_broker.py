"""The embedded broker: kombu's filesystem transport, with each message
written whole before it appears in its queue's folder.

kombu creates a message's file under its final name, then locks it and
writes it. A worker listing the folder in between takes the file empty and
fails to decode it, which stops its consumer (seen under 40 uploads a
second, with a pool of threads polling beside the prefork worker). Written
under a name no queue matches and then renamed, which is atomic within one
filesystem, a message is seen whole or not at all.
"""

from __future__ import annotations

import os
import time
import uuid
from queue import Empty
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps

DRAIN_AT_MOST = 100


class Channel(filesystem.Channel):
    # kombu's own signature, wider than its base class's.
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        folder = self.data_folder_out
        # As kombu names it: the time first, so that the folder's order is
        # the queue's, and the queue's name for the readers' match.
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        staged = os.path.join(folder, f".{uuid.uuid4()}.staged")
        try:
            with open(staged, "wb") as file:
                file.write(dumps(payload).encode())  # type: ignore[no-untyped-call]
            os.replace(staged, os.path.join(folder, name))
        except OSError as error:
            raise ChannelError(f"Cannot add file {name!r} to directory") from error


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

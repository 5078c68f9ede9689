"""A TCP proxy in front of PostgreSQL that can lose the answer to a commit.

It reads PostgreSQL's wire protocol (each message after the startup one is a
type byte and a length) only far enough to recognise a transaction that
claimed a job and its COMMIT. Armed, it forwards that COMMIT, waits for the
server's CommandComplete (the transaction is committed), and then closes
the client's connection instead of passing the answer on: the client never
learns that its claim was made. Everything else passes as it is.

Clients must connect without TLS (`sslmode=disable`): the proxy reads plain
messages.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

CLAIM = (b"UPDATE post_processor_jobs", b"claimed_by", b"CASE")


class CommitEater:
    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.armed = threading.Event()
        self.eaten = 0  # commit answers lost on purpose
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []

    def serve(self) -> None:
        with contextlib.suppress(OSError):  # the listener closed: done
            while True:
                client, _ = self._listener.accept()
                threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _relay(self, client: socket.socket) -> None:
        server = socket.create_connection(self.server)
        self._sockets += [client, server]
        # Set by the client side when the commit of a claim went out.
        commit_sent = threading.Event()
        upstream = threading.Thread(
            target=self._client_to_server, args=(client, server, commit_sent), daemon=True
        )
        upstream.start()
        with contextlib.suppress(OSError):
            while True:
                kind, body = read_message(server)
                if commit_sent.is_set() and kind == b"C" and body.startswith(b"COMMIT"):
                    commit_sent.clear()
                    self.eaten += 1
                    break  # committed; the client never hears of it
                client.sendall(kind + struct.pack("!I", len(body) + 4) + body)
        for sock in (client, server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _client_to_server(
        self, client: socket.socket, server: socket.socket, commit_sent: threading.Event
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            # The startup message has no type byte.
            (length,) = struct.unpack("!I", read_exactly(client, 4))
            server.sendall(struct.pack("!I", length) + read_exactly(client, length - 4))
            claimed = False
            while True:
                kind, body = read_message(client)
                if all(part in body for part in CLAIM):
                    claimed = True
                elif kind == b"Q" and body.upper().startswith(b"COMMIT") and claimed:
                    claimed = False
                    if self.armed.is_set():
                        self.armed.clear()
                        commit_sent.set()
                elif kind == b"Q" and body.upper().startswith(b"ROLLBACK"):
                    claimed = False
                server.sendall(kind + struct.pack("!I", len(body) + 4) + body)


def read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    kind = read_exactly(sock, 1)
    (length,) = struct.unpack("!I", read_exactly(sock, 4))
    return kind, read_exactly(sock, length - 4)


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


@contextlib.contextmanager
def commit_eater(host: str, port: int) -> Iterator[CommitEater]:
    proxy = CommitEater((host, port))
    threading.Thread(target=proxy.serve, daemon=True).start()
    try:
        yield proxy
    finally:
        proxy.close()

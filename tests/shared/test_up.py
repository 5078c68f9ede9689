"""`itemflow up`'s check that its ports are free."""

from __future__ import annotations

import socket

from shared.up import _port_taken


def test_a_listening_port_is_taken():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert _port_taken("127.0.0.1", server.getsockname()[1])


def test_a_port_whose_server_stopped_with_clients_connected_is_free_at_once():
    # A server bound as uvicorn binds closes a kept-alive connection first,
    # as uvicorn does on Ctrl-C: its end stays in TIME-WAIT for a minute.
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()
        client.recv(1)  # the server's FIN has arrived
    client.close()
    with open("/proc/net/tcp") as table:
        timewait = [line for line in table if f":{port:04X} " in line]
    assert any(line.split()[3] == "06" for line in timewait), timewait  # TIME_WAIT

    assert not _port_taken("127.0.0.1", port)

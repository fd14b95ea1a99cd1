"""The hub tells a screen that stopped reading from one that reads slowly by the bytes its peer
acknowledges (dashboard.hub.tcp_progress), measured here on a real TCP connection."""
from __future__ import annotations

import socket
import time

from dashboard.hub import tcp_progress
from tests.support import wait_for


def _pair(receive_buffer: int) -> tuple[socket.socket, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    peer = socket.socket()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    peer.connect(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    server.setblocking(False)
    return server, peer


def _fill(server: socket.socket) -> int:
    sent = 0
    try:
        while True:
            sent += server.send(b"x" * 65536)
    except BlockingIOError:
        return sent


def test_a_peer_that_stops_reading_leaves_bytes_held_and_acknowledges_none():
    server, peer = _pair(4096)
    try:
        assert tcp_progress(server)[0] == 0                   # nothing held yet
        _fill(server)
        time.sleep(0.5)                                       # the peer's window is full: no more acks
        held, acked = tcp_progress(server)
        time.sleep(0.5)
        assert held > 0 and tcp_progress(server) == (held, acked)
        # it reads again: the acknowledged count moves on
        peer.settimeout(2)
        for _ in range(20):
            peer.recv(65536)
        wait_for(lambda: tcp_progress(server)[1] > acked, 5, "the peer to acknowledge what it read")
    finally:
        server.close()
        peer.close()


def test_a_closed_or_missing_connection_tells_nothing():
    server, peer = _pair(65536)
    server.close()
    peer.close()
    assert tcp_progress(server) is None
    assert tcp_progress(None) is None

"""The hub tells a screen that stopped reading from one that reads slowly by the bytes its peer
acknowledges (dashboard.hub.tcp_progress), measured here on a real TCP connection."""
from __future__ import annotations

import socket
import struct

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


_TCPI_UNACKED = 24      # offset of tcpi_unacked (segments sent, not yet acknowledged) in Linux's struct tcp_info


def _window_closed(server: socket.socket) -> bool:
    """Bytes held for the peer and none of them in flight: the peer's receive window is shut (it
    stopped reading), so nothing more can be sent, nor acknowledged, until it reads."""
    info = server.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return tcp_progress(server)[0] > 0 and struct.unpack_from("I", info, _TCPI_UNACKED)[0] == 0


def test_a_peer_that_stops_reading_leaves_bytes_held_and_acknowledges_none():
    server, peer = _pair(4096)
    try:
        assert tcp_progress(server)[0] == 0                   # nothing held yet
        _fill(server)
        wait_for(lambda: _window_closed(server), 5, "the peer's window to shut", interval=0.01)
        held, acked = tcp_progress(server)
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

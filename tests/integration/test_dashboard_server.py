"""The dashboard on its production server (dashboard/server.py, dashboard/hub.py) against the real
stack: gunicorn with one threaded worker and one live hub, stopped promptly by SIGTERM; request,
header and WebSocket message limits; a screen that stops reading is cut off while the others keep
their frames; a reconnect storm on one scope builds one snapshot; a member's name is text on the
wall, never HTML.

Screens are driven at the wire level (wsproto over a plain TCP socket: `WireScreen`), so a test
decides when a screen reads, or that it never does."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import timedelta

import psycopg2
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, RejectConnection, Request, TextMessage

from core.orgcodes import Level, ancestor
from dashboard.app import SOCKET_PING_S
from dashboard.hub import BACKLOG_LIMIT, STALL_LIMIT_S
from dashboard.server import SCREENS_MAX
from telemetry.live.bus import BusWriter
from telemetry.live.changes import FixChange

from ..support import wait_for
from .screens import Dashboard, ensure_signed_in, member_fix, now, wall_key

pytestmark = pytest.mark.slow

SOCKET_PATH = "/socket.io/?EIO=4&transport=websocket"
TCP_ESTABLISHED = 1
# what a member's name could be after an import from elsewhere: HTML that runs if a tooltip takes it as HTML
HOSTILE_NAME = 'Mallory <img src=x onerror="window.__injected = true"> 王'


class WireScreen:
    """A screen's Socket.IO connection at the wire level: nothing is read unless the test asks."""

    def __init__(self, port: int, receive_buffer: int | None = None, cookie: str | None = None) -> None:
        self.sock = socket.socket()
        if receive_buffer:   # before connecting: the window the server sees stays this small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.connect(("127.0.0.1", port))
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.messages: list[str] = []
        self._partial = ""
        self.accepted, self.rejected, self.closed, self.close_code = False, None, False, None
        headers = [(b"cookie", cookie.encode())] if cookie else []
        self.sock.sendall(self.ws.send(Request(host=f"127.0.0.1:{port}", target=SOCKET_PATH, extra_headers=headers)))
        deadline = time.monotonic() + 10
        while not (self.accepted or self.rejected or self.closed) and time.monotonic() < deadline:
            self._read(1.0)

    def _read(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        except ConnectionResetError:
            data = b""
        self.ws.receive_data(data or None)
        self.closed = self.closed or not data
        reply = b""
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted = True
            elif isinstance(event, RejectConnection):
                self.rejected = event.status_code
            elif isinstance(event, TextMessage):
                self._partial += event.data
                if event.message_finished:
                    self.messages.append(self._partial)
                    self._partial = ""
            elif isinstance(event, Ping):
                reply += self.ws.send(event.response())
            elif isinstance(event, CloseConnection):
                self.closed, self.close_code = True, event.code
        if reply:
            self.sock.sendall(reply)

    def send(self, text: str) -> None:
        self.sock.sendall(self.ws.send(TextMessage(data=text)))

    def join(self, feed: str, scope: str) -> None:
        """Socket.IO's CONNECT to /live with the screen's feed and scope."""
        self.send("40/live," + json.dumps({"feed": feed, "scope": scope}))

    def message(self, prefix: str, timeout: float = 10.0) -> str | None:
        """The next message that starts with `prefix` (answering engine.io's pings meanwhile)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while not self.messages and not self.closed and time.monotonic() < deadline:
                self._read(min(1.0, max(0.01, deadline - time.monotonic())))
            if not self.messages:
                return None
            message = self.messages.pop(0)
            if message == "2":
                self.send("3")
            elif message.startswith(prefix):
                return message
        return None

    def event(self, name: str, timeout: float = 10.0):
        """The payload of the next Socket.IO event `name` on /live."""
        deadline = time.monotonic() + timeout
        while (message := self.message("42/live,", deadline - time.monotonic())) is not None:
            event, payload = json.loads(message[len("42/live,"):])
            if event == name:
                return payload
        return None

    def tcp_state(self) -> int:
        return self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]

    def close(self) -> None:
        self.sock.close()


def _joined(board, feed: str, scope: str) -> tuple[WireScreen, dict]:
    screen = WireScreen(board.port, cookie=board.cookie)
    screen.join(feed, scope)
    snapshot = screen.event("snapshot")
    assert snapshot is not None, board.log()
    return screen, snapshot


def _workers(master: int) -> list[int]:
    """The pids of the gunicorn master's children (its workers)."""
    with open(f"/proc/{master}/task/{master}/children") as children:
        return [int(p) for p in children.read().split()]


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status_file:
        status = status_file.read()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))


class Board(Dashboard):
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def hostile_member(city, settings):
    """A member whose name (in the database, where the dashboard reads it) is HOSTILE_NAME."""
    member = city.members[150]
    with psycopg2.connect(settings.pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("update members set name = %s where member_id = %s", (HOSTILE_NAME, member.member_id))
    yield member
    with psycopg2.connect(settings.pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("update members set name = %s where member_id = %s", (member.name, member.member_id))


@pytest.fixture(scope="module")
def board(stack, city, hostile_member, tmp_path_factory):
    """A dashboard of this module's own (its log is read), fed by an ingest worker of its own."""
    from .ingest_helpers import fed_by_a_worker

    with fed_by_a_worker(stack, Board(stack, tmp_path_factory.mktemp("dash-server") / "dashboard.log"), 95) as board:
        yield board


def test_the_dashboard_runs_on_gunicorn_with_one_threaded_worker_and_one_live_hub(board):
    with urllib.request.urlopen(board.url + "/wall", timeout=5) as response:
        assert response.headers["Server"] == "gunicorn"
    log = board.log()
    assert "Using worker: ScreenWorker" in log
    assert "werkzeug" not in log.lower()
    workers = _workers(board.proc.pid)
    assert len(workers) == 1 and log.count("Booting worker") == 1
    assert re.findall(r"live hub started in process (\d+)", log) == [str(workers[0])]


def test_sigterm_stops_the_dashboard_within_seconds_with_screens_connected(stack, city, tmp_path):
    board = Board(stack, tmp_path / "dashboard.log")
    board.start()
    try:
        screens = [_joined(board, "wall", "")[0] for _ in range(3)]
        bare = WireScreen(board.port, cookie=board.cookie)     # a WebSocket that never joins a feed
        assert bare.accepted
        worker = _workers(board.proc.pid)[0]
        started = time.monotonic()
        board.proc.send_signal(signal.SIGTERM)
        assert board.proc.wait(20) == 0
        took = time.monotonic() - started
        assert took < 5, f"took {took:.1f} s: the worker waited for its sockets"
        assert not os.path.exists(f"/proc/{worker}")
        assert all(s.event("frame", 2) is None and s.closed for s in screens)
    finally:
        board.stop()


@pytest.mark.parametrize("auth", ['{"feed": "wall", "scope": "999999"}',    # not an org unit of the city
                                  '{"feed": "everything", "scope": ""}',   # a feed no page declares
                                  '{"scope": ""}', ""])                     # no feed at all
def test_a_screen_the_server_cannot_authorize_is_refused_and_gets_nothing(board, auth):
    screen = WireScreen(board.port, cookie=board.cookie)
    screen.send("40/live," + auth)
    answer = screen.message("4", 10)
    assert answer is not None and answer.startswith("44/live,"), answer   # CONNECT_ERROR, not CONNECT
    assert screen.event("snapshot", 2) is None
    screen.close()


def _http(board, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", board.port), timeout=10) as sock:
        sock.sendall(raw)
        try:
            return sock.recv(4096)
        except ConnectionResetError:
            return b""


def test_oversized_bodies_request_lines_and_headers_are_refused(board):
    body = b"{" + b" " * (2 * 1024 * 1024) + b"}"
    request = urllib.request.Request(board.url + "/_dash-update-component", data=body, method="POST",
                                     headers={"Content-Type": "application/json", "Origin": board.url,
                                              "Cookie": board.cookie})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 413
    long_line = _http(board, b"GET /wall?scope=" + b"1" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert long_line.startswith(b"HTTP/1.1 414"), long_line[:200]
    headers = b"".join(b"X-Filler-%d: 1\r\n" % i for i in range(80))   # ours is 64; gunicorn's default 100
    many = _http(board, b"GET /wall HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert many.startswith(b"HTTP/1.1 431"), many[:200]
    assert urllib.request.urlopen(board.url + "/wall", timeout=5).status == 200


def test_an_endless_websocket_message_is_cut_off_before_it_is_buffered(board):
    screen = WireScreen(board.port, cookie=board.cookie)
    assert screen.accepted
    sent = 0
    with pytest.raises(OSError):   # the server closes the connection long before 64 MB
        while sent < 64 * 1024 * 1024:
            screen.sock.sendall(screen.ws.send(TextMessage(data="x" * 65536, message_finished=False)))
            sent += 65536
    assert sent < 16 * 1024 * 1024
    screen.close()
    assert urllib.request.urlopen(board.url + "/wall", timeout=5).status == 200


def test_a_screen_that_stops_reading_is_cut_off_while_the_others_keep_their_frames(board, city, redis_client):
    stop = threading.Event()
    writer = BusWriter(redis_client, f"test-{uuid.uuid4().hex[:6]}")

    def fixes_flow():   # every member moves four times a second: frames of ~50 KB at 2 Hz
        i = 0
        while not stop.is_set():
            i += 1
            t = time.time()
            writer.publish([FixChange(m.terminal_id, m.member_id, m.grid_code, m.grid_code, t, 119.3 + 1e-6 * i,
                                      26.08, 80) for m in city.members])
            stop.wait(0.25)

    normal, _ = _joined(board, "wall", "")
    frames: list[int] = []

    def keep_reading():
        while not stop.is_set():
            frame = normal.event("frame", 1.0)
            if frame:
                frames.append(frame["seq"])

    threads = [threading.Thread(target=fixes_flow, daemon=True), threading.Thread(target=keep_reading, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        worker = _workers(board.proc.pid)[0]
        rss_before = _rss_kb(worker)
        stalled = WireScreen(board.port, receive_buffer=4096, cookie=board.cookie)
        stalled.join("wall", "")                    # ... and never reads again
        started = time.monotonic()
        wait_for(lambda: stalled.tcp_state() != TCP_ESTABLISHED, 20 + STALL_LIMIT_S,
                 "the server to cut off the screen that stopped reading")
        cut_off_after = time.monotonic() - started
        rss_after = _rss_kb(worker)
        frames_then = len(frames)
        wait_for(lambda: len(frames) >= frames_then + 2, 10, "frames to the screen that reads, after the cut")
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    log = board.log()
    waiting = [int(n) for n in re.findall(r"stopped reading: (\d+) packets waiting", log)]
    assert len(waiting) == 1 and waiting[0] <= BACKLOG_LIMIT + 1, log[-2000:]
    assert cut_off_after < 20 + STALL_LIMIT_S
    assert rss_after - rss_before < 64 * 1024, f"the worker grew by {(rss_after - rss_before) // 1024} MB"
    # the screen that reads had every frame, in order, before and after
    assert len(frames) > frames_then >= 2 * cut_off_after * 0.7
    assert frames == list(range(frames[0], frames[0] + len(frames)))
    normal.close()
    stalled.close()


def test_a_socket_that_answers_no_ping_is_closed_with_its_tcp_connection(board):
    silent = WireScreen(board.port, cookie=board.cookie)     # opens its session, then neither reads nor answers
    assert silent.accepted
    started = time.monotonic()
    wait_for(lambda: silent.tcp_state() != TCP_ESTABLISHED, 4 * SOCKET_PING_S,
             "the server to close the connection of a socket that answers no ping")
    assert time.monotonic() - started > SOCKET_PING_S   # only once its ping went unanswered
    silent.close()


def test_a_reconnect_storm_on_one_scope_builds_its_snapshot_once(board, city, redis_client):
    street = city.streets[1].code
    members = [m for m in city.members if m.grid_code.startswith(street)]
    writer = BusWriter(redis_client, f"test-{uuid.uuid4().hex[:6]}")
    screens = [WireScreen(board.port, cookie=board.cookie) for _ in range(100)]   # the engine.io sessions first ...
    assert all(s.accepted for s in screens)
    builds_before = board.log().count(f"built the snapshot of wall@{street} ")
    for screen in screens:                                  # ... then all ask for the street at once
        screen.join("wall", street)
    writer.publish([FixChange(m.terminal_id, m.member_id, m.grid_code, m.grid_code, time.time(), 119.3, 26.08, 80)
                    for m in members])
    snapshots = [s.event("snapshot") for s in screens]
    assert all(snapshots)
    writer.publish([FixChange(m.terminal_id, m.member_id, m.grid_code, m.grid_code, time.time(), 119.31, 26.08, 80)
                    for m in members])
    assert board.log().count(f"built the snapshot of wall@{street} ") - builds_before == 1
    assert len({s["t"] for s in snapshots}) == 1
    for screen, snapshot in zip(screens, snapshots, strict=True):  # each then follows its room's frames in order
        frame = screen.event("frame", 5)
        assert frame is not None and frame["seq"] == snapshot["seq"] + 1
        screen.close()


def test_websockets_beyond_the_limit_are_refused_and_pages_still_load(board):
    opened: list[WireScreen] = []
    try:
        for _ in range(SCREENS_MAX + 1):
            screen = WireScreen(board.port, cookie=board.cookie)
            if not screen.accepted:
                assert screen.rejected == 503
                break
            opened.append(screen)
        assert SCREENS_MAX - 4 <= len(opened) <= SCREENS_MAX
        assert urllib.request.urlopen(board.url + "/wall", timeout=5).status == 200
    finally:
        for screen in opened:
            screen.close()
    wait_for(lambda: _admitted(board), 10, "the closed sockets' places to be free again")


def _admitted(board) -> bool:
    screen = WireScreen(board.port, cookie=board.cookie)
    screen.close()
    return screen.accepted


def test_a_member_name_holding_html_is_text_in_the_wall_tooltip(board, stack, city, hostile_member, page):
    grid = city.grid_by_code[hostile_member.grid_code].boundary
    start, end = grid.representative_point(), grid.centroid
    member_fix(stack, hostile_member, start.x, start.y, now() - timedelta(seconds=5))
    ensure_signed_in(page, board.url)
    page.goto(f"{board.url}/wall?scope={ancestor(hostile_member.grid_code, Level.COMMUNITY)}")
    terminal = wall_key(stack, hostile_member.terminal_id)
    page.wait_for_function(f"() => {{ const st = window.gcc && window.gcc.live && window.gcc.live.state('wall');"
                           f" return st && st.members.has('{terminal}') && window.gcc.markers.has('{terminal}'); }}",
                           timeout=20000)
    tooltip = f"window.gcc.markers.get('{terminal}').getTooltip().getElement()"

    def shown_as_text() -> None:
        page.evaluate(f"() => window.gcc.markers.get('{terminal}').openTooltip()")
        page.wait_for_function(f"() => {tooltip}.textContent.length > 0")     # drawn
        assert page.evaluate(f"() => {tooltip}.querySelector('img') === null")   # nothing that could load, or fail
        assert page.evaluate("() => window.__injected === undefined"), "the name's markup ran"
        assert page.evaluate(f"() => {tooltip}.textContent").startswith(HOSTILE_NAME)

    shown_as_text()                          # the tooltip bound when the marker was drawn
    member_fix(stack, hostile_member, end.x, end.y)
    page.wait_for_function(f"() => Math.abs(window.gcc.live.state('wall').members.get('{terminal}').lon - {end.x})"
                           " < 1e-6", timeout=10000)
    shown_as_text()                          # and the content set when a frame moved it
    assert page.errors == []

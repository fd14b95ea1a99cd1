"""Live pushes to the screens over Socket.IO (Flask-SocketIO, threading mode).

- A screen connects to namespace /live with the feed and the scope it wants in `auth`. The server
  asks the one authorization point (authz.authorize) whether the identity may see the page that
  declares that feed at that scope; the room of (feed, scope) is decided by the server, never named
  by a client. The screen then gets a snapshot (retried until it can be built), the frames sent
  to the room since that snapshot was built, and only then joins the room: it sees every frame
  after its snapshot once, in order. A reconnect gets a snapshot again: that is the resync.
- Snapshots are built once per room and serve every screen that connects within SNAPSHOT_FRESH_S
  (one build at a time per room; the others wait for it): a reconnect storm of a hundred screens
  on one scope costs the database one snapshot, not a hundred.
- Frames are numbered per room and the snapshot carries the number it is current to: a screen
  applies each frame once, in order, and asks for a resync (reconnects) when it sees a gap.
- The hub reads the live bus (telemetry.live: a Redis stream, one envelope per committed batch)
  from where it left off (a lost Redis connection costs nothing), routes each change to the rooms
  whose feed takes that kind and whose scope contains the change's org unit
  (core.orgcodes.ancestors), merges them (feeds.Frame)
  and sends at most one `frame` per room every frame interval. When a producer's numbering shows
  that envelopes were missed (trimmed while the hub was far behind, or never written), every
  watched room gets a fresh snapshot.
- A screen that stops reading is cut off: what is sent to a screen waits in its engine.io queue
  until the socket's writer thread hands it to the kernel, whose send buffer is kept small
  (SEND_BUFFER_BYTES). Before each round of frames the hub looks at every screen: one whose queue
  holds more than BACKLOG_LIMIT packets (it reads, but slower than its frames come), or that has
  something waiting (in that queue or in the kernel) while its peer has acknowledged no byte for
  STALL_LIMIT_S (TCP_INFO's bytes_acked: progress measured in bytes, so a big snapshot going out
  slowly to a screen that reads is not taken for a stall, and one that stopped mid-packet is),
  gets its TCP connection aborted. The browser reconnects by itself and resyncs once it reads again.
- Feeds with periodic pushes (the wall's heat map) get them for the rooms that have screens.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import struct
import termios
import threading
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache

import redis
from flask import request
from flask_login import current_user
from flask_socketio import SocketIO

from core import orgcodes
from core.catalogue import AuditAction
from dashboard.authz import Scope, authorize, current_identity
from dashboard.feeds import Feed, Frame
from dashboard.vocabulary import for_browser
from telemetry import live

log = logging.getLogger(__name__)

NAMESPACE = "/live"
SNAPSHOT_FRESH_S = 2.0      # a snapshot serves every screen that connects to its room this long
REPLAY_FRAMES = 32          # frames kept per room to bring a snapshot up to date (16 s at 2 frames/s)
BACKLOG_LIMIT = 64          # packets waiting for one screen: beyond this it is cut off
STALL_LIMIT_S = 10.0        # ... and when its peer has taken no byte of what waits for this long
SEND_BUFFER_BYTES = 256 * 1024   # the kernel's send buffer per screen (instead of autotuning up to 4 MB)
SESSION_CHECK_S = 2.0       # the sessions of the open screens are checked this often: an ended one is closed


@dataclass(frozen=True)
class Snapshot:
    seq: int                       # the number of the room's last frame sent when the build began
    generation: int                # the hub's resync generation it was built in
    built_at: float                # time.monotonic() when the build began
    payload: dict


@dataclass
class Room:
    feed: Feed
    scope: Scope
    viewers: int = 0
    seq: int = 0                   # the number of the last frame sent
    recent: deque = field(default_factory=lambda: deque(maxlen=REPLAY_FRAMES))   # (seq, payload) sent last
    snapshot: Snapshot | None = None
    failure: tuple[float, Exception] | None = None   # the last build's failure, if it failed
    building: threading.Lock = field(default_factory=threading.Lock)

    def frames_after(self, seq: int) -> list[dict] | None:
        """The frames sent after frame `seq`, in order; None when some of them are no longer kept."""
        wanted = self.seq - seq
        kept = [payload for s, payload in self.recent if s > seq]
        return kept if len(kept) == wanted else None


@dataclass
class Screen:
    """One connected screen: its room, its engine.io session and its TCP connection."""
    room: str
    eio_sid: str | None
    connection: socket.socket | None
    acked: int = -1                # the bytes its peer had acknowledged when last looked at ...
    progress_at: float = 0.0       # ... and since when (or since when nothing has waited for it)
    cut_off: bool = False
    session: str | None = None     # the hash of the session it connected with (dashboard.accounts)


@lru_cache(maxsize=65536)
def scopes_seeing(org_code: str | None) -> tuple[str, ...]:
    """The scope codes whose screens see a change in this org unit: the city ("") and every
    level from the district down to the unit itself."""
    if not org_code or not orgcodes.is_valid(org_code):
        return ("",)
    return ("", *orgcodes.ancestors(org_code))


def watch_index(rooms: dict[str, Room]) -> dict[str, dict[str, list[str]]]:
    """change kind -> scope code -> the rooms with screens whose feed takes that kind there."""
    index: dict[str, dict[str, list[str]]] = {}
    for name, room in rooms.items():
        if room.viewers > 0:
            for kind in room.feed.kinds:
                index.setdefault(kind, {}).setdefault(room.scope.code, []).append(name)
    return index


def route(index: dict[str, dict[str, list[str]]], changes, pending: dict[str, Frame]) -> None:
    """Add each change to the pending frame of every room that watches its kind at a scope that
    contains the change's org unit."""
    for change in changes:
        rooms_by_scope = index.get(change.KIND)
        if not rooms_by_scope:
            continue
        for code in scopes_seeing(change.route_code):
            for room in rooms_by_scope.get(code, ()):
                pending[room].add(change)


def connection_of(environ: dict) -> socket.socket | None:
    """The TCP connection of a request, where the WSGI server puts it (gunicorn; Werkzeug)."""
    return environ.get("gunicorn.socket") or environ.get("werkzeug.socket")


_TCPI_BYTES_ACKED = 120     # offset of tcpi_bytes_acked in Linux's struct tcp_info (since 4.2)


def tcp_progress(connection: socket.socket | None) -> tuple[int, int] | None:
    """(bytes the kernel still holds for the peer: unsent or unacknowledged, bytes the peer has
    acknowledged so far) of a TCP connection; None when it cannot tell (closed, not TCP)."""
    if connection is None:
        return None
    try:
        info = connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        held = struct.unpack("i", fcntl.ioctl(connection.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
    except (OSError, ValueError):
        return None
    if len(info) < _TCPI_BYTES_ACKED + 8:
        return None
    return held, struct.unpack_from("Q", info, _TCPI_BYTES_ACKED)[0]


def abort_connection(connection: socket.socket | None) -> None:
    """Cut a TCP connection off now, from any thread: threads blocked sending to it or reading
    from it wake up with an error, and the close that follows resets it (what the kernel still
    buffers for it is dropped) instead of waiting for a peer that does not read."""
    if connection is None:
        return
    with contextlib.suppress(OSError):   # closed already
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.shutdown(socket.SHUT_RDWR)


class LiveHub:
    def __init__(self, socketio: SocketIO, city, queries, pages, bus_client: redis.Redis,
                 frame_interval_s: float = 0.5, accounts=None, audit=None) -> None:
        self.socketio = socketio
        self.accounts = accounts       # dashboard.accounts.Accounts: which sessions are still live
        self.audit = audit or (lambda *args: None)
        self.city = city
        self.queries = queries
        self.pages_by_feed = {p.feed.name: p for p in pages if p.feed is not None}
        self.frame_interval_s = frame_interval_s
        self.bus = live.BusReader(bus_client)
        self.rooms: dict[str, Room] = {}
        self.pending: dict[str, Frame] = defaultdict(Frame)
        self.screens: dict[str, Screen] = {}
        self._index: dict[str, dict[str, list[str]]] = {}   # kind -> scope code -> rooms watching
        # Lock order: a room's `building`, then `sending`, then `lock`. `sending` orders the frames'
        # numbers, their emits, the frames kept for replay and the screens joining their rooms;
        # `lock` guards rooms, screens and the pending frames.
        self.lock = threading.Lock()
        self.sending = threading.Lock()
        self.generation = 0            # goes up at every resync of all rooms: older snapshots are stale
        self.stopping = threading.Event()
        # frame numbers start again at every start of this process: snapshots and frames say which
        # start they belong to, so a screen never mixes the numbers of two
        self.boot = uuid.uuid4().hex[:12]
        socketio.on_event("connect", self.on_connect, namespace=NAMESPACE)
        socketio.on_event("disconnect", self.on_disconnect, namespace=NAMESPACE)

    # --- screens --------------------------------------------------------------------------------
    def on_connect(self, auth=None):
        wanted = auth if isinstance(auth, dict) else {}
        page = self.pages_by_feed.get(str(wanted.get("feed", "")))
        if page is None:
            log.warning("refused a screen asking for unknown feed %r", wanted.get("feed"))
            return False
        identity = current_identity()
        decision = authorize(self.city, identity, page, str(wanted.get("scope", "")))
        if not decision:
            log.warning("refused a %s screen: %s", page.feed.name, decision.reason)
            self.audit(identity, AuditAction.SCREEN_CONNECT, "refused", decision.reason,
                       f"feed:{page.feed.name}?scope={wanted.get('scope', '')}", request.remote_addr)
            return False
        user = current_user
        session_hash = user.found.id_hash if getattr(user, "is_authenticated", False) else None
        room = page.feed.room(decision.scope)
        connection = connection_of(request.environ)
        eio_sid = self.socketio.server.manager.eio_sid_from_sid(request.sid, NAMESPACE)
        with self.lock:
            entry = self.rooms.setdefault(room, Room(page.feed, decision.scope))
            entry.viewers += 1
            self.screens[request.sid] = Screen(room, eio_sid, connection, session=session_hash)
            self._reindex()
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        self.socketio.start_background_task(self._send_snapshot, request.sid, room)
        return True

    def on_disconnect(self, *args):
        with self.lock:
            screen = self.screens.pop(request.sid, None)
            if screen is not None:
                room = self.rooms[screen.room]
                room.viewers -= 1
                if room.viewers == 0:
                    room.snapshot = None    # nobody left to serve it to
                self._reindex()

    def _reindex(self) -> None:
        self._index = watch_index(self.rooms)

    def _snapshot(self, name: str, fresh: bool = False) -> Snapshot:
        """The room's snapshot: the one built last if it is recent and no resync came since (unless
        `fresh`), else a new one. One build per room at a time: the others wait for it."""
        room = self.rooms[name]
        with room.building:
            now = time.monotonic()
            snapshot, failure = room.snapshot, room.failure
            if not fresh and snapshot is not None and snapshot.generation == self.generation \
                    and now - snapshot.built_at < SNAPSHOT_FRESH_S:
                return snapshot
            if not fresh and failure is not None and now - failure[0] < SNAPSHOT_FRESH_S:
                raise failure[1]    # it has just failed: the waiting screens do not all try again
            with self.sending:
                seq, generation = room.seq, self.generation
            try:
                body = room.feed.snapshot(self.queries, room.scope)
            except Exception as exc:
                room.failure = (time.monotonic(), exc)
                raise
            payload = body | {"feed": room.feed.name, "scope": room.scope.code, "scope_name": room.scope.name,
                              "boot": self.boot, "seq": seq, "vocabulary": for_browser(), "t": time.time()}
            room.snapshot, room.failure = Snapshot(seq, generation, now, payload), None
            log.info("built the snapshot of %s in %.0f ms", name, (time.monotonic() - now) * 1000)
            return room.snapshot

    def _send_snapshot(self, to: str, room_name: str, room_wide: bool = False) -> None:
        """Send a snapshot and the frames sent since it was built, then let the screen join its
        room (all while no frame can go out); if the database or Redis is away, keep trying while
        the screen is connected (it shows "connecting" meanwhile). `room_wide`: a resync of the
        whole room, from a snapshot built for it."""
        delay, fresh = 0.5, room_wide
        while not self.stopping.is_set():
            if not room_wide and to not in self.screens:
                return  # the screen went away
            try:
                snapshot = self._snapshot(room_name, fresh=fresh)
            except Exception as exc:  # contained: retried
                log.warning("snapshot for %s failed (%s); retrying in %.1f s", room_name, exc, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, 10.0)
                continue
            with self.sending:
                room = self.rooms[room_name]
                since = room.frames_after(snapshot.seq) if snapshot.generation == self.generation else None
                if since is not None:
                    self.socketio.emit("snapshot", snapshot.payload, to=to, namespace=NAMESPACE)
                    for frame in since:
                        self.socketio.emit("frame", frame, to=to, namespace=NAMESPACE)
                    if not room_wide:
                        with self.lock:
                            if to in self.screens:
                                self.socketio.server.enter_room(to, room_name, namespace=NAMESPACE)
            if since is not None:
                return
            # built before a resync, or older than the frames kept: build anew (and if a fresh one
            # was stale already, its build outlasts the frames kept or resyncs keep coming: back off)
            if fresh:
                log.warning("the snapshot of %s was stale when built; building again in %.1f s", room_name, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, 10.0)
            fresh = True

    def _resync_all(self) -> None:
        with self.sending:
            self.generation += 1
        with self.lock:
            watched = [name for name, room in self.rooms.items() if room.viewers > 0]
        for name in watched:
            self.socketio.start_background_task(self._send_snapshot, name, name, True)

    def _backlog(self, screen: Screen) -> tuple[int, float]:
        """How many packets wait for this screen (engine.io keeps a queue per connection, which its
        writer thread empties into the socket), and for how long something has waited for it while
        its peer acknowledged no byte."""
        eio_socket = self.socketio.server.eio.sockets.get(screen.eio_sid)
        queue = getattr(eio_socket, "queue", None)
        waiting = len(getattr(queue, "queue", ()))   # the queue.Queue's deque
        now = time.monotonic()
        progress = tcp_progress(screen.connection)
        if progress is None:
            return waiting, 0.0
        held, acked = progress
        if acked != screen.acked or not (waiting or held):
            screen.acked, screen.progress_at = acked, now
        return waiting, now - screen.progress_at

    def _cut_off_stalled(self) -> None:
        """Abort the connection of every screen that stopped reading (see the module's docstring)."""
        with self.lock:
            screens = [s for s in self.screens.values() if not s.cut_off]
        for screen in screens:
            waiting, stuck_s = self._backlog(screen)
            if waiting > BACKLOG_LIMIT or stuck_s > STALL_LIMIT_S:
                screen.cut_off = True
                log.warning("cut off a screen of %s that stopped reading: %d packets waiting, no byte taken for %.0f s",
                            screen.room, waiting, stuck_s)
                abort_connection(screen.connection)

    def connections(self) -> list[socket.socket]:
        with self.lock:
            return [s.connection for s in self.screens.values() if s.connection is not None]

    # --- the live bus ---------------------------------------------------------------------------
    def _listen(self) -> None:
        while not self.stopping.is_set():
            try:
                items = self.bus.read()
            except (redis.RedisError, OSError) as exc:
                log.warning("live bus interrupted (%s); reading on from the last entry", exc)
                self.stopping.wait(1.0)
                continue
            except Exception:  # contained: the reader is past the entry it could not take
                log.exception("reading the live bus failed; resynchronising every screen, then reading on")
                self._resync_all()   # what that read had taken is lost: rebuild from the stored state
                self.stopping.wait(1.0)
                continue
            try:
                gaps = []
                for item in items:
                    if isinstance(item, live.Envelope):
                        self._route(item)
                        if item.unknown_kinds:
                            log.warning("%s sent %d changes of kinds this dashboard does not know (a newer "
                                        "version?); they were left out", item.producer, item.unknown_kinds)
                    elif isinstance(item, live.BusGap):
                        gaps.append(item)
                    else:
                        log.warning("skipped a live bus entry: %s", item)
                if gaps:
                    log.warning("missed %d envelopes of %s on the live bus; resynchronising every screen",
                                sum(g.missed for g in gaps), ", ".join(sorted({g.producer for g in gaps})))
                    self._resync_all()
            except Exception:  # contained: one bad entry must not stop the live stream
                log.exception("live bus read failed")
                self.stopping.wait(1.0)

    def _route(self, envelope: live.Envelope) -> None:
        with self.lock:
            route(self._index, envelope.changes, self.pending)

    def _flush(self) -> None:
        while not self.stopping.wait(self.frame_interval_s):
            try:
                self._cut_off_stalled()
                with self.sending:
                    with self.lock:
                        frames, self.pending = self.pending, defaultdict(Frame)
                    for name, frame in frames.items():
                        room = self.rooms[name]
                        room.seq += 1
                        payload = frame.encode(room.feed, self.queries, room.scope, room.seq) | {"boot": self.boot}
                        room.recent.append((room.seq, payload))
                        self.socketio.emit("frame", payload, to=name, namespace=NAMESPACE)
            except Exception:  # contained: the next frame carries on
                log.exception("sending frames failed")

    def _close_ended_sessions(self) -> None:
        """Keep the open screens' sessions alive (an open screen is in use) and close the screens
        whose session has ended (logout, expiry, a disabled user, a revoked wall token): the socket
        is closed from here, and its TCP connection with it."""
        if self.accounts is None:
            return
        with self.lock:
            open_screens = {sid: s for sid, s in self.screens.items() if s.session is not None and not s.cut_off}
        if not open_screens:
            return
        live_ones = self.accounts.keep_alive(list({s.session for s in open_screens.values()}),
                                             datetime.now(timezone.utc))
        for sid, screen in open_screens.items():
            if screen.session in live_ones:
                continue
            log.info("closing a screen of %s: its session has ended", screen.room)
            try:
                self.socketio.server.disconnect(sid, namespace=NAMESPACE)
            except Exception:  # contained: the TCP connection is cut below all the same
                log.exception("could not close the socket of a screen whose session ended")
            abort_connection(screen.connection)
            with self.lock:
                screen.cut_off = True

    def _periodic(self) -> None:
        due: dict[tuple[str, str], float] = {}
        sessions_due = 0.0
        while not self.stopping.wait(1.0):
            now = time.monotonic()
            if now >= sessions_due:
                sessions_due = now + SESSION_CHECK_S
                try:
                    self._close_ended_sessions()
                except Exception:  # contained: the next round tries again
                    log.exception("checking the screens' sessions failed")
            with self.lock:
                watched = [(name, room) for name, room in self.rooms.items() if room.viewers > 0]
            for name, room in watched:
                for push in room.feed.periodic:
                    key = (name, push.event)
                    if now < due.setdefault(key, now + push.every_s):
                        continue
                    due[key] = now + push.every_s
                    try:
                        self.socketio.emit(push.event, push.build(self.queries, room.scope), to=name,
                                           namespace=NAMESPACE)
                    except Exception:  # contained: the next round tries again
                        log.exception("%s for %s failed", push.event, name)

    def start(self) -> None:
        for target, name in ((self._listen, "live-bus"), (self._flush, "live-frames"),
                             (self._periodic, "live-periodic")):
            threading.Thread(target=target, name=name, daemon=True).start()
        log.info("live hub started in process %d", os.getpid())

    def stop(self) -> None:
        """Stop the hub's threads and cut every screen off (safe in a signal handler: it takes no
        lock that the interrupted main thread of a server could hold)."""
        self.stopping.set()
        for connection in self.connections():
            abort_connection(connection)

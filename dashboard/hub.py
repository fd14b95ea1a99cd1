"""Live pushes to the screens over Socket.IO (Flask-SocketIO, threading mode).

- A screen connects to namespace /live with the feed and the scope it wants in `auth`. The server
  asks the one authorization point (authz.authorize) whether the identity may see the page that
  declares that feed at that scope, and puts the socket into the room of (feed, scope); a client
  never names a room. It then sends a full snapshot (retried until it can be built). A reconnect
  gets a fresh snapshot: that is the resync.
- Frames are numbered per room and the snapshot carries the number it is current to: a screen
  applies each frame once, in order, and asks for a resync (reconnects) when it sees a gap.
- The hub reads the live bus (telemetry.live: a Redis stream, one envelope per committed batch)
  from where it left off (a lost Redis connection costs nothing), routes each change to the rooms
  whose feed takes that kind and whose scope contains the change's org unit
  (telemetry.orgcodes.ancestors), merges them (feeds.Frame)
  and sends at most one `frame` per room every frame interval. When a producer's numbering shows
  that envelopes were missed (trimmed while the hub was far behind, or never written), every
  watched room gets a fresh snapshot.
- Feeds with periodic pushes (the wall's heat map) get them for the rooms that have screens.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache

import redis
from flask import request
from flask_socketio import SocketIO, join_room

from dashboard.authz import Scope, authorize, current_identity
from dashboard.feeds import Feed, Frame
from dashboard.vocabulary import for_browser
from telemetry import live, orgcodes

log = logging.getLogger(__name__)

NAMESPACE = "/live"


@dataclass
class Room:
    feed: Feed
    scope: Scope
    viewers: int = 0
    seq: int = 0                   # the number of the last frame sent


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


class LiveHub:
    def __init__(self, socketio: SocketIO, city, queries, pages, bus_client: redis.Redis,
                 frame_interval_s: float = 0.5) -> None:
        self.socketio = socketio
        self.city = city
        self.queries = queries
        self.pages_by_feed = {p.feed.name: p for p in pages if p.feed is not None}
        self.frame_interval_s = frame_interval_s
        self.bus = live.BusReader(bus_client)
        self.rooms: dict[str, Room] = {}
        self.pending: dict[str, Frame] = defaultdict(Frame)
        self.sid_room: dict[str, str] = {}
        self._index: dict[str, dict[str, list[str]]] = {}   # kind -> scope code -> rooms watching
        self.lock = threading.Lock()
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
        decision = authorize(self.city, current_identity(), page, str(wanted.get("scope", "")))
        if not decision:
            log.warning("refused a %s screen: %s", page.feed.name, decision.reason)
            return False
        room = page.feed.room(decision.scope)
        join_room(room)
        with self.lock:
            entry = self.rooms.setdefault(room, Room(page.feed, decision.scope))
            entry.viewers += 1
            self.sid_room[request.sid] = room
            self._reindex()
        self.socketio.start_background_task(self._send_snapshot, request.sid, room)
        return True

    def on_disconnect(self, *args):
        with self.lock:
            room = self.sid_room.pop(request.sid, None)
            if room is not None:
                self.rooms[room].viewers -= 1
                self._reindex()

    def _reindex(self) -> None:
        self._index = watch_index(self.rooms)

    def _send_snapshot(self, to: str, room_name: str, room_wide: bool = False) -> None:
        """Build and send a snapshot; if the database or Redis is away, keep trying while the
        screen is connected (it shows "connecting" meanwhile)."""
        delay = 0.5
        while not self.stopping.is_set():
            with self.lock:
                if not room_wide and to not in self.sid_room:
                    return  # the screen went away
                room = self.rooms[room_name]
                seq = room.seq
            try:
                body = room.feed.snapshot(self.queries, room.scope)
            except Exception as exc:  # contained: retried
                log.warning("snapshot for %s failed (%s); retrying in %.1f s", room_name, exc, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, 10.0)
                continue
            snapshot = body | {"feed": room.feed.name, "scope": room.scope.code, "scope_name": room.scope.name,
                               "boot": self.boot, "seq": seq, "vocabulary": for_browser(), "t": time.time()}
            self.socketio.emit("snapshot", snapshot, to=to, namespace=NAMESPACE)
            return

    def _resync_all(self) -> None:
        with self.lock:
            watched = [name for name, room in self.rooms.items() if room.viewers > 0]
        for name in watched:
            self.socketio.start_background_task(self._send_snapshot, name, name, True)

    # --- the live bus ---------------------------------------------------------------------------
    def _listen(self) -> None:
        while not self.stopping.is_set():
            try:
                items = self.bus.read()
            except (redis.RedisError, OSError) as exc:
                log.warning("live bus interrupted (%s); reading on from the last entry", exc)
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
                with self.lock:
                    frames, self.pending = self.pending, defaultdict(Frame)
                    numbered = []
                    for name, frame in frames.items():
                        room = self.rooms[name]
                        room.seq += 1
                        numbered.append((name, room, room.seq, frame))
                for name, room, seq, frame in numbered:
                    payload = frame.encode(room.feed, self.queries, room.scope, seq) | {"boot": self.boot}
                    self.socketio.emit("frame", payload, to=name, namespace=NAMESPACE)
            except Exception:  # contained: the next frame carries on
                log.exception("sending frames failed")

    def _periodic(self) -> None:
        due: dict[tuple[str, str], float] = {}
        while not self.stopping.wait(1.0):
            now = time.monotonic()
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

    def stop(self) -> None:
        self.stopping.set()

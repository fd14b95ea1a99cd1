"""Live pushes to the screens over Socket.IO (Flask-SocketIO, threading mode).

- A screen connects to namespace /live with the scope it wants in `auth`; the server checks that the
  scope is an org unit of this city and puts the socket into that scope's room (a client never names
  a room), then sends a full snapshot (retried until it can be built). A reconnect gets a fresh
  snapshot: that is the resync.
- Frames are numbered per room and the snapshot carries the number it is current to: a screen
  applies each frame once, in order, and asks for a resync (reconnects) when it sees a gap.
- The ingest workers emit their changes through the Redis message queue channel (namespace
  /ingest, rooms org:city, org:<district>, org:<street>, org:<community>). The hub reads that
  channel, merges the changes per room (newest fix per terminal, newest value per sensor, every
  alarm and report) and sends at most one `frame` per room every FRAME_INTERVAL_S.
- Every HEAT_INTERVAL_S the rooms that have screens get fresh heat maps.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

import orjson
import redis
from flask import request
from flask_socketio import SocketIO, join_room

from dashboard.queries import Queries, Scope, category_label
from ingest.events import CHANNEL
from ingest.events import NAMESPACE as INGEST_NAMESPACE

log = logging.getLogger(__name__)

NAMESPACE = "/live"
FRAME_INTERVAL_S = 0.5
HEAT_INTERVAL_S = 60.0


class Frame:
    """The changes of one room since the last frame, merged."""

    def __init__(self) -> None:
        self.fixes: dict[str, dict] = {}
        self.statuses: dict[str, dict] = {}
        self.readings: dict[tuple, dict] = {}
        self.gateways: dict[str, dict] = {}
        self.alarms: list[dict] = []
        self.reports: list[dict] = []

    def merge(self, changes: dict) -> None:
        for fix in changes.get("fixes", ()):
            kept = self.fixes.get(fix["terminal_id"])
            if kept is None or kept[3] <= fix["t"]:
                # compact: [terminal_id, lon, lat, t, battery, grid]; names and roles come with the snapshot
                self.fixes[fix["terminal_id"]] = [fix["terminal_id"], round(fix["lon"], 6), round(fix["lat"], 6),
                                                  fix["t"], fix.get("battery"), fix.get("grid")]
        for status in changes.get("statuses", ()):
            kept = self.statuses.get(status["terminal_id"])
            if kept is None or kept["t"] <= status["t"]:
                self.statuses[status["terminal_id"]] = status
        for reading in changes.get("readings", ()):
            self.readings[(reading["sensor_id"], reading["quantity"])] = reading
        for gateway in changes.get("gateways", ()):
            self.gateways[gateway["gateway_id"]] = gateway
        self.alarms.extend(changes.get("alarms", ()))
        self.reports.extend(report | {"label": category_label(report.get("category", ""))}
                            for report in changes.get("reports", ()))

    def as_dict(self, scope: str, seq: int) -> dict:
        return {"scope": scope, "seq": seq, "fixes": list(self.fixes.values()), "statuses": list(self.statuses.values()),
                "readings": list(self.readings.values()), "gateways": list(self.gateways.values()),
                "alarms": self.alarms, "reports": self.reports, "t": time.time()}


class LiveHub:
    def __init__(self, socketio: SocketIO, queries: Queries, redis_client: redis.Redis,
                 frame_interval_s: float = FRAME_INTERVAL_S) -> None:
        self.socketio = socketio
        self.frame_interval_s = frame_interval_s
        self.queries = queries
        self.r = redis_client
        self.pending: dict[str, Frame] = defaultdict(Frame)
        self.seq: dict[str, int] = defaultdict(int)         # room -> number of the last frame sent
        self.viewers: dict[str, int] = defaultdict(int)    # room -> connected screens
        self.scopes: dict[str, Scope] = {}                  # room -> its scope
        self.sid_room: dict[str, str] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        socketio.on_event("connect", self.on_connect, namespace=NAMESPACE)
        socketio.on_event("disconnect", self.on_disconnect, namespace=NAMESPACE)

    # --- screens --------------------------------------------------------------------------------
    def on_connect(self, auth=None):
        wanted = (auth or {}).get("scope", "") if isinstance(auth, dict) else ""
        scope = self.queries.scope(wanted)
        if scope is None:
            log.warning("refused a screen asking for unknown scope %r", wanted)
            return False
        join_room(scope.room)
        with self.lock:
            self.viewers[scope.room] += 1
            self.scopes[scope.room] = scope
            self.sid_room[request.sid] = scope.room
        self.socketio.start_background_task(self._send_snapshot, request.sid, scope)
        return True

    def _send_snapshot(self, to: str, scope, room_wide: bool = False) -> None:
        """Build and send a snapshot; if the database or Redis is away, keep trying while the
        screen is connected (it shows "connecting" meanwhile)."""
        delay = 0.5
        while not self.stopping.is_set():
            with self.lock:
                if not room_wide and to not in self.sid_room:
                    return  # the screen went away
                seq = self.seq[scope.room]
            try:
                snapshot = self.queries.snapshot(scope) | {"seq": seq}
            except Exception as exc:  # contained: retried
                log.warning("snapshot for %s failed (%s); retrying in %.1f s", scope.room, exc, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, 10.0)
                continue
            self.socketio.emit("snapshot", snapshot, to=to, namespace=NAMESPACE)
            return

    def on_disconnect(self, *args):
        with self.lock:
            room = self.sid_room.pop(request.sid, None)
            if room is not None:
                self.viewers[room] -= 1

    # --- the ingest stream ------------------------------------------------------------------------
    def _listen(self) -> None:
        first = True
        while not self.stopping.is_set():
            try:
                pubsub = self.r.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL)
                if not first:
                    self._resync_all()  # changes published while we were away are in no frame
                first = False
                while not self.stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._take(message["data"])
            except (redis.RedisError, OSError) as exc:
                log.warning("live stream from Redis interrupted (%s); reconnecting", exc)
                time.sleep(1.0)

    def _watched(self) -> list[Scope]:
        """The scopes that have screens now."""
        with self.lock:
            return [self.scopes[room] for room, n in self.viewers.items() if n > 0]

    def _resync_all(self) -> None:
        for scope in self._watched():
            self.socketio.start_background_task(self._send_snapshot, scope.room, scope, True)

    def _take(self, raw: bytes) -> None:
        try:
            message = orjson.loads(raw)
            if message.get("namespace") != INGEST_NAMESPACE or message.get("method") != "emit":
                return
            room, data = message.get("room"), message.get("data") or [{}]
            with self.lock:
                if self.viewers.get(room):
                    self.pending[room].merge(data[0])
        except Exception:  # contained: one bad message must not stop the live stream
            log.exception("dropped an unreadable live message from the queue")

    def _flush(self) -> None:
        while not self.stopping.wait(self.frame_interval_s):
            try:
                with self.lock:
                    frames, self.pending = self.pending, defaultdict(Frame)
                    numbered = []
                    for room, frame in frames.items():
                        self.seq[room] += 1
                        numbered.append((room, frame.as_dict(self.scopes[room].code, self.seq[room])))
                for room, payload in numbered:
                    self.socketio.emit("frame", payload, to=room, namespace=NAMESPACE)
            except Exception:  # contained: the next frame carries on
                log.exception("sending frames failed")

    def _heat_loop(self) -> None:
        while not self.stopping.wait(HEAT_INTERVAL_S):
            for scope in self._watched():
                try:
                    self.socketio.emit("heat", self.queries.heat_all(scope), to=scope.room, namespace=NAMESPACE)
                except Exception:  # contained: the next round tries again
                    log.exception("heat map for %s failed", scope.room)

    def start(self) -> None:
        for target, name in ((self._listen, "live-listen"), (self._flush, "live-flush"), (self._heat_loop, "live-heat")):
            threading.Thread(target=target, name=name, daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()

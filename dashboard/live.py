"""Live pushes to the screens over Socket.IO (Flask-SocketIO, threading mode).

- A screen connects to namespace /live with the scope it wants in `auth`; the server checks that the
  scope is an org unit of this city and puts the socket into that scope's room (a client never names
  a room), then sends a full snapshot. A reconnect gets a fresh snapshot: that is the resync.
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

from dashboard.queries import Queries, category_label
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
            self.statuses[status["terminal_id"]] = status
        for reading in changes.get("readings", ()):
            self.readings[(reading["sensor_id"], reading["quantity"])] = reading
        for gateway in changes.get("gateways", ()):
            self.gateways[gateway["gateway_id"]] = gateway
        self.alarms.extend(changes.get("alarms", ()))
        self.reports.extend(report | {"label": category_label(report.get("category", ""))}
                            for report in changes.get("reports", ()))

    def as_dict(self) -> dict:
        return {"fixes": list(self.fixes.values()), "statuses": list(self.statuses.values()),
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
        self.viewers: dict[str, int] = defaultdict(int)    # room -> connected screens
        self.sid_room: dict[str, str] = {}
        self.lock = threading.Lock()
        self.frames_sent = 0
        self.last_frame_bytes = 0
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
            self.sid_room[request.sid] = scope.room
        self.socketio.emit("snapshot", self.queries.snapshot(scope), to=request.sid, namespace=NAMESPACE)
        return True

    def on_disconnect(self, *args):
        with self.lock:
            room = self.sid_room.pop(request.sid, None)
            if room is not None:
                self.viewers[room] -= 1

    # --- the ingest stream ------------------------------------------------------------------------
    def _listen(self) -> None:
        while not self.stopping.is_set():
            try:
                pubsub = self.r.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL)
                while not self.stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._take(message["data"])
            except (redis.RedisError, OSError) as exc:
                log.warning("live stream from Redis interrupted (%s); reconnecting", exc)
                time.sleep(1.0)

    def _take(self, raw: bytes) -> None:
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        if message.get("namespace") != INGEST_NAMESPACE or message.get("method") != "emit":
            return
        room, data = message.get("room"), message.get("data") or [{}]
        with self.lock:
            if self.viewers.get(room):
                self.pending[room].merge(data[0])

    def _flush(self) -> None:
        last_heat = 0.0
        while not self.stopping.wait(self.frame_interval_s):
            with self.lock:
                frames, self.pending = self.pending, defaultdict(Frame)
                rooms = [room for room, n in self.viewers.items() if n > 0]
            for room, frame in frames.items():
                payload = frame.as_dict()
                self.last_frame_bytes = len(orjson.dumps(payload))
                self.socketio.emit("frame", payload, to=room, namespace=NAMESPACE)
                self.frames_sent += 1
            if time.monotonic() - last_heat >= HEAT_INTERVAL_S:
                last_heat = time.monotonic()
                self._push_heat(rooms)

    def _push_heat(self, rooms: list[str]) -> None:
        for room in rooms:
            scope = self.queries.scope(room.removeprefix("org:").replace("city", ""))
            try:
                self.socketio.emit("heat", self.queries.heat_all(scope), to=room, namespace=NAMESPACE)
            except Exception:  # contained: the next round tries again
                log.exception("heat map for %s failed", room)

    def start(self) -> None:
        for target, name in ((self._listen, "live-listen"), (self._flush, "live-flush")):
            threading.Thread(target=target, name=name, daemon=True).start()

    def stop(self) -> None:
        self.stopping.set()

"""A phone's outbox (`handheld_outbox`, written by handheld/bridge.py): what waits for it, its
acknowledgements, and the stream that brings each item as it is written (docs/HANDHELD_API.md
"Downlink").

    GET  /handheld/api/v1/outbox?after=<seq>   what is not acknowledged, oldest first (at most 200)
    GET  /handheld/api/v1/stream               server-sent events: what waits, then each new item
    POST /handheld/api/v1/outbox/ack           {"seqs": [...]}: only the caller's own rows

One server process holds thousands of open streams, so a stream costs no thread and no query of
its own while it waits: ONE listener thread per process (`Hub`) LISTENs on `handheld_outbox` (the
table's trigger names the phones that got something) and on `registry` (a device retired), reads
the new rows of the phones named for all their open streams in one query, and hands each stream
its rows (`loop.call_soon_threadsafe` sets the stream's asyncio.Event). Every KEEPALIVE_S, and at
once on a registry change, it asks in one query which open streams' devices were retired since,
and ends those streams. A stream ends too when the client goes (the server closes its iterator).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import orjson
import psycopg2

from core.http import MAX_BODY, Refused, Reply, Request, Route, refusal
from database.pool import WaitingPool
from handheld.caller import Caller

log = logging.getLogger(__name__)

API = "/handheld/api/v1"
CHANNEL = "handheld_outbox"          # migration 0030's trigger: the phones that got something, or ""
REGISTRY_CHANNEL = "registry"        # migration 0024: a reference table changed (a device retired)
KEEPALIVE_S = 15.0
PAGE = 200                           # items in one answer of GET /outbox
MAX_ACK = 1000                       # seqs in one acknowledgement
_COLUMNS = "seq, device_id, kind, body, created_at"
_LIVE = ("select d.device_id from member_devices d join members m using (member_id) "
         "where d.device_id = any(%s) and d.kind = 'handheld' and d.retired_at is null and m.retired_at is null")


@dataclass(frozen=True)
class Item:
    seq: int
    kind: str
    body: dict
    created_at: datetime

    @classmethod
    def of_row(cls, row: tuple) -> Item:
        seq, _device, kind, body, created_at = row
        return cls(seq, kind, body, created_at)

    def as_json(self) -> dict:
        return {"seq": self.seq, "kind": self.kind, "body": self.body, "created_at": self.created_at.isoformat()}

    def event(self) -> bytes:
        """The item as one server-sent event."""
        return b"id: %d\nevent: %s\ndata: %s\n\n" % (self.seq, self.kind.encode(), orjson.dumps(self.as_json()))


KEEPALIVE = b": keep-alive\n\n"


@dataclass(eq=False)
class Listener:
    """One open stream as the hub sees it: its device, the newest seq handed to it, what the hub
    handed over and not yet taken (a deque: appended by the hub's thread, taken on the loop), and
    how to wake it on its own event loop."""
    device_id: str
    after: int
    loop: asyncio.AbstractEventLoop
    wake: asyncio.Event
    items: deque = field(default_factory=deque)
    revoked: bool = False

    def hand(self, items: list[Item]) -> None:          # the hub's thread
        self.items.extend(items)
        self.after = max(self.after, items[-1].seq)
        self._wake()

    def revoke(self) -> None:                           # the hub's thread
        self.revoked = True
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):    # its loop closed: the server went, and the stream with it
            self.loop.call_soon_threadsafe(self.wake.set)


class Hub:
    """The process's one listener: new outbox rows to the open streams of their devices, and the
    end of the streams of a retired device."""

    def __init__(self, dsn: str, keepalive_s: float = KEEPALIVE_S) -> None:
        self.dsn = dsn
        self.keepalive_s = keepalive_s
        self._listeners: dict[str, set[Listener]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.listening = threading.Event()      # LISTEN is in place (what a test waits for)
        self.wakeups = 0                        # notifications handled (a test reads it)
        self._thread = threading.Thread(target=self._run, name="handheld-outbox-hub", daemon=True)
        self._thread.start()

    def add(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.setdefault(listener.device_id, set()).add(listener)

    def remove(self, listener: Listener) -> None:
        with self._lock:
            group = self._listeners.get(listener.device_id)
            if group is not None:
                group.discard(listener)
                if not group:
                    del self._listeners[listener.device_id]

    @property
    def open_streams(self) -> int:
        with self._lock:
            return sum(len(group) for group in self._listeners.values())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    # --- the thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except psycopg2.Error as error:
                self.listening.clear()
                log.warning("the outbox listener lost the database (%s); listening again", str(error).strip())
                self._stop.wait(1.0)

    def _listen(self) -> None:
        conn = psycopg2.connect(self.dsn, application_name="gcc-handheld-outbox", connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"listen {CHANNEL}; listen {REGISTRY_CHANNEL}")
            self.listening.set()
            self._deliver(conn, None)        # anything written while nobody listened
            self._check_devices(conn)
            while not self._stop.is_set():
                ready = select.select([conn], [], [], self.keepalive_s)[0]
                if not ready:
                    self._check_devices(conn)
                    continue
                conn.poll()
                devices: set[str] | None = set()
                registry = False
                while conn.notifies:
                    note = conn.notifies.pop(0)
                    if note.channel == REGISTRY_CHANNEL:
                        registry = True
                    elif not note.payload:
                        devices = None                     # too many to name: look at every open stream
                    elif devices is not None:
                        devices.update(note.payload.split(","))
                self.wakeups += 1
                if devices is None or devices:
                    self._deliver(conn, devices)
                if registry:
                    self._check_devices(conn)
        finally:
            self.listening.clear()
            conn.close()

    def _deliver(self, conn, devices: set[str] | None) -> None:
        """The unacknowledged rows after what each open stream of these devices (None: all) has."""
        with self._lock:
            wanted = [(d, min(x.after for x in group)) for d, group in self._listeners.items()
                      if devices is None or d in devices]
        if not wanted:
            return
        with conn.cursor() as cur:
            cur.execute(f"select {_COLUMNS} from handheld_outbox h join unnest(%s::text[], %s::bigint[]) "
                        "as k(device, after) on h.device_id = k.device and h.seq > k.after "
                        "where h.acked_at is null order by h.seq",
                        ([d for d, _ in wanted], [a for _, a in wanted]))
            rows = cur.fetchall()
        by_device: dict[str, list[Item]] = {}
        for row in rows:
            by_device.setdefault(row[1], []).append(Item.of_row(row))
        with self._lock:
            targets = [(x, items) for d, items in by_device.items() for x in self._listeners.get(d, ())]
        for listener, items in targets:
            fresh = [i for i in items if i.seq > listener.after]
            if fresh:
                listener.hand(fresh)

    def _check_devices(self, conn) -> None:
        """End the streams of devices retired (or whose member was) since they opened."""
        with self._lock:
            devices = list(self._listeners)
        if not devices:
            return
        with conn.cursor() as cur:
            cur.execute(_LIVE, (devices,))
            live = {d for (d,) in cur.fetchall()}
        with self._lock:
            gone = [x for d in devices if d not in live for x in self._listeners.get(d, ())]
        for listener in gone:
            listener.revoke()


class Outbox:
    """A process's outbox endpoints: a small pool for the reads and acknowledgements, and the hub
    (started with the first stream)."""

    def __init__(self, dsn: str, keepalive_s: float = KEEPALIVE_S, pool_size: int = 4) -> None:
        self.dsn = dsn
        self.keepalive_s = keepalive_s
        self.db = WaitingPool(0, pool_size, dsn, connect_timeout=5, application_name="gcc-handheld")
        self._hub: Hub | None = None
        self._hub_lock = threading.Lock()

    @property
    def hub(self) -> Hub:
        with self._hub_lock:
            if self._hub is None:
                self._hub = Hub(self.dsn, self.keepalive_s)
            return self._hub

    def close(self) -> None:
        if self._hub is not None:
            self._hub.stop()
        self.db.closeall()

    def _run(self, query: str, args: tuple, fetch: bool = True) -> list[tuple] | int:
        conn = self.db.getconn()
        broken = False
        try:
            with conn, conn.cursor() as cur:
                cur.execute(query, args)
                return cur.fetchall() if fetch else cur.rowcount
        except psycopg2.OperationalError:
            broken = True
            raise
        finally:
            self.db.putconn(conn, close=broken or conn.closed)

    # --- the questions ----------------------------------------------------------------------------
    def pending(self, device_id: str, after_seq: int = 0, limit: int = PAGE) -> list[Item]:
        """The device's unacknowledged items after `after_seq`, oldest first."""
        rows = self._run(f"select {_COLUMNS} from handheld_outbox where device_id = %s and acked_at is null "
                         "and seq > %s order by seq limit %s", (device_id, after_seq, limit))
        return [Item.of_row(row) for row in rows]

    def ack(self, device_id: str, seqs: list[int]) -> int:
        """Acknowledge these items of the device (another device's seqs are not touched); returns
        how many were acknowledged now (a repeat: none)."""
        return self._run("update handheld_outbox set acked_at = now() where device_id = %s and seq = any(%s) "
                         "and acked_at is null", (device_id, list(seqs)), fetch=False)

    def is_live(self, device_id: str) -> bool:
        return bool(self._run(_LIVE, ([device_id],)))

    # --- the endpoints ----------------------------------------------------------------------------
    def outbox(self, caller: Caller, request: Request) -> Reply:
        try:
            after = _after(request)
        except Refused as refused:
            return refused.reply
        items = self.pending(caller.device_id, after)
        return Reply(200, orjson.dumps({"items": [i.as_json() for i in items]}),
                     headers=(("Cache-Control", "no-store"),))

    def acknowledge(self, caller: Caller, request: Request) -> Reply:
        try:
            seqs = _seqs(request.body())
        except Refused as refused:
            return refused.reply
        return Reply(200, orjson.dumps({"acked": self.ack(caller.device_id, seqs)}))

    def stream(self, caller: Caller, request: Request | None = None) -> Reply:
        """The server-sent events of the caller's outbox: what waits (after Last-Event-ID or
        `?after=`), then each new item as it is written, a comment every keep-alive; it ends when
        the device is retired (or the client goes: the server closes the iterator)."""
        try:
            after = _after(request) if request is not None else 0
        except Refused as refused:
            return refused.reply
        # a comment at once: the server writes the headers with the first bytes, and the phone says
        # "online" only when they come (else not before the first keep-alive)
        return Reply(200, KEEPALIVE, content_type="text/event-stream; charset=utf-8",
                     headers=(("Cache-Control", "no-store"), ("X-Accel-Buffering", "no")),
                     stream=self.events(caller.device_id, after))

    async def events(self, device_id: str, after: int = 0) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        listener = Listener(device_id, after, loop, asyncio.Event())
        hub = self.hub
        hub.add(listener)                   # first, so nothing written from now on is missed
        try:
            last = after
            while True:                     # what waits, a page at a time
                page = await loop.run_in_executor(None, self._opening, device_id, last)
                if page is None:
                    return                  # retired meanwhile
                if page:
                    last = page[-1].seq
                    listener.after = max(listener.after, last)
                    yield b"".join(i.event() for i in page)
                if len(page) < PAGE:
                    break
            while True:
                listener.wake.clear()
                fresh = [listener.items.popleft() for _ in range(len(listener.items))]
                fresh = [i for i in fresh if i.seq > last]
                if fresh:
                    last = fresh[-1].seq
                    yield b"".join(i.event() for i in fresh)
                    continue
                if listener.revoked:
                    return
                try:
                    await asyncio.wait_for(listener.wake.wait(), self.keepalive_s)
                except TimeoutError:
                    yield KEEPALIVE
        finally:                            # the end, the client gone (GeneratorExit) or cancelled
            hub.remove(listener)

    def _opening(self, device_id: str, after: int) -> list[Item] | None:
        if not self.is_live(device_id):
            return None
        return self.pending(device_id, after)

    def routes(self, signed_in: Callable[[Callable[[Caller, Request], Reply]], Callable[[Request], Reply]]
               ) -> list[Route]:
        """GET /outbox, GET /stream and POST /outbox/ack, each behind the session check."""
        return [Route("GET", f"{API}/outbox", signed_in(self.outbox), max_body=0),
                Route("GET", f"{API}/stream", signed_in(self.stream), max_body=0),
                Route("POST", f"{API}/outbox/ack", signed_in(self.acknowledge), max_body=MAX_BODY)]


def _after(request: Request) -> int:
    """Where the caller's outbox continues: `?after=<seq>`, else the stream's Last-Event-ID, else 0."""
    values = parse_qs(urlsplit(request.path).query).get("after") or []
    raw = values[0] if values else (request.headers.get("Last-Event-ID") or "0")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise Refused(refusal(400, "bad_after"))
    return int(raw)


def _seqs(body: bytes) -> list[int]:
    """The seqs of an acknowledgement, `{"seqs": [1, 2, …]}` (1 to MAX_ACK positive integers)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Refused(refusal(400, "invalid_json")) from None
    seqs = doc.get("seqs") if isinstance(doc, dict) else None
    if (not isinstance(seqs, list) or not 1 <= len(seqs) <= MAX_ACK
            or not all(type(s) is int and 0 < s < 2**63 for s in seqs)):
        raise Refused(refusal(400, "bad_seqs"))
    return seqs

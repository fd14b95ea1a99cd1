"""Simulated members' phones (网格通) speaking the handheld's HTTPS API (docs/HANDHELD_API.md), not
MQTT: the same simulated member (simulator.devices.TerminalSim) with another way to the server.

All the phones of a simulator process share one asyncio loop in one thread (`PhoneLink`), each with
a kept-alive connection for what it sends and one for its downlink stream (simulator.httpclient):
thousands fit in one process. A phone behaves as the app does: what the member makes goes into its
outbox first and leaves it, in order, only when the server has committed it (retried with backoff
while the server is away or busy); the downlink stream's items are handed to the member's
simulation and acknowledged; a phone "offline" (no signal) keeps what it makes and sends it when
it is back, so nothing is lost and nothing is sent twice that the server counted once."""
from __future__ import annotations

import asyncio
import logging
import queue
import random
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson
import psycopg2

from simulator.httpclient import Answer, Connection
from telemetry.topics import NOTICE, PREFIX, TASK, org_topic, terminal_topic

log = logging.getLogger(__name__)
API = "/handheld/api/v1"
BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
Downlink = Callable[[str, bytes], None]     # (topic as MQTT would have it, payload)


@dataclass
class PhoneCredentials:
    device_id: str
    device_secret: str
    pin: str


@dataclass
class Phone:
    """One member's enrolled phone. `publish(topic, payload)` is called from the simulator's own
    thread (TerminalSim.send); the downlink reaches `on_downlink` through the link's queue, so the
    simulation is only ever touched from its own thread."""
    terminal_id: str
    enrol_code: str | None = None
    credentials: PhoneCredentials | None = None
    pin: str = "246810"
    connected: bool = False            # signed in and its stream open
    paused: bool = False               # no signal: what it makes waits in its outbox
    offline_for_s: float = 0.0
    outbox: deque = field(default_factory=deque)
    counts: Counter = field(default_factory=Counter)
    token: str | None = None
    _wake: asyncio.Event | None = None
    _link: PhoneLink | None = None

    # --- the simulator's side (its thread) ------------------------------------------------------
    def publish(self, topic: str, payload: bytes) -> None:
        self._link.call(self._put, topic, payload)

    def go_offline_with_will(self) -> None:
        """No signal for a while: a phone has no last will; what it makes meanwhile waits."""
        self.paused = True
        self._link.call(self._wake_up)

    def come_back(self) -> None:
        self.paused = False
        self._link.call(self._wake_up)

    # --- the loop's side ------------------------------------------------------------------------
    def _put(self, topic: str, payload: bytes) -> None:
        leaf = _leaf(topic, self.terminal_id)
        if leaf is None:        # a malformed publication on some other topic: no such call exists
            self.counts["not_sendable"] += 1
            return
        self.outbox.append((leaf, payload))
        self._wake_up()

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()


def _leaf(topic: str, terminal_id: str) -> str | None:
    prefix = f"{PREFIX}/terminal/{terminal_id}/"
    return topic[len(prefix):] if topic.startswith(prefix) else None


class PhoneLink:
    """The phones' event loop, in its own thread; `downlinks` is where their downlink waits for the
    simulator's thread (`drain`)."""

    def __init__(self, base_url: str, timeout_s: float = 30.0,
                 on_enrolled: Callable[[Phone], None] | None = None) -> None:
        parts = urlsplit(base_url)
        self.on_enrolled = on_enrolled     # a phone has just used its code: keep its credentials
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout_s = timeout_s
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="phones", daemon=True)
        self.downlinks: queue.SimpleQueue = queue.SimpleQueue()
        self.phones: list[Phone] = []
        self._tasks: list[asyncio.Task] = []
        self.stopping = False

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, fn, *args) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def add(self, phone: Phone, on_downlink: Downlink) -> None:
        phone._link = self
        self.phones.append(phone)

        def begin() -> None:
            phone._wake = asyncio.Event()
            self._tasks.append(self.loop.create_task(self._phone(phone, on_downlink)))
        self.call(begin)

    def drain(self, limit: int = 10_000) -> int:
        """Hand the downlink that arrived to the simulations (from the simulator's thread)."""
        handled = 0
        while handled < limit:
            try:
                deliver, topic, payload = self.downlinks.get_nowait()
            except queue.Empty:
                break
            deliver(topic, payload)
            handled += 1
        return handled

    def stop(self) -> None:
        self.stopping = True

        async def cancel() -> None:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self.loop.stop()
        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(cancel()))
        self.thread.join(10)

    # --- one phone --------------------------------------------------------------------------------
    def _connection(self) -> Connection:
        return Connection(self.host, self.port, self.timeout_s)

    async def _phone(self, phone: Phone, on_downlink: Downlink) -> None:
        sender, rng = self._connection(), random.Random(phone.terminal_id)
        stream: asyncio.Task | None = None
        attempt = 0
        try:
            while not self.stopping:
                if phone.paused:
                    if stream is not None:
                        stream.cancel()
                        stream = None
                    phone.connected = False
                    phone._wake.clear()
                    await phone._wake.wait()
                    continue
                try:
                    if phone.token is None:
                        await self._sign_in(phone, sender)
                    if stream is None or stream.done():
                        stream = self.loop.create_task(self._stream(phone, on_downlink))
                    phone.connected = True
                    await self._send_waiting(phone, sender)
                    attempt = 0
                    phone._wake.clear()
                    if not phone.outbox:
                        await phone._wake.wait()
                except (TimeoutError, OSError, ConnectionError, _Retry) as exc:
                    phone.connected = False
                    phone.counts[f"retry:{type(exc).__name__}"] += 1
                    delay = getattr(exc, "after", None) or BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                    attempt += 1
                    await asyncio.sleep(delay * rng.uniform(0.8, 1.2))   # backoff: a phone's own wait
        finally:
            if stream is not None:
                stream.cancel()
                await asyncio.gather(stream, return_exceptions=True)
            await sender.close()

    async def _sign_in(self, phone: Phone, conn: Connection) -> None:
        if phone.credentials is None:
            answer = await conn.request("POST", f"{API}/enrol", _json_headers(),
                                        orjson.dumps({"code": phone.enrol_code, "pin": phone.pin,
                                                      "label": "simulated phone"}))
            body = _checked(answer, phone, "enrol")
            phone.credentials = PhoneCredentials(body["device_id"], body["device_secret"], phone.pin)
            if self.on_enrolled is not None:
                self.on_enrolled(phone)
        c = phone.credentials
        answer = await conn.request("POST", f"{API}/session", _json_headers(),
                                    orjson.dumps({"device_id": c.device_id, "device_secret": c.device_secret,
                                                  "pin": c.pin}))
        phone.token = _checked(answer, phone, "session")["token"]

    async def _send_waiting(self, phone: Phone, conn: Connection) -> None:
        while phone.outbox and not phone.paused:
            leaf, payload = phone.outbox[0]
            answer = await conn.request("POST", f"{API}/messages/{leaf}", _auth(phone), payload)
            if answer.status == 200:
                phone.counts["stored"] += 1
            elif answer.status == 400:
                phone.counts["refused"] += 1          # the app lists it with the server's reason
            else:
                _checked(answer, phone, "message")    # raises: kept, sent again later
            phone.outbox.popleft()

    async def _stream(self, phone: Phone, on_downlink: Downlink) -> None:
        conn, attempt, rng = self._connection(), 0, random.Random(phone.terminal_id + "/stream")
        while not self.stopping and not phone.paused:
            try:
                await self._drain_outbox(phone, conn, on_downlink)
                buffer = b""
                async for piece in conn.stream(f"{API}/stream", _auth(phone)):
                    if isinstance(piece, Answer):
                        _checked(piece, phone, "stream")
                        attempt = 0
                        continue
                    buffer += piece
                    *events, buffer = buffer.split(b"\n\n")
                    items = [_event_data(e) for e in events]
                    await self._take(phone, conn, [i for i in items if i is not None], on_downlink)
            except (TimeoutError, OSError, ConnectionError, _Retry) as exc:
                phone.counts[f"stream_retry:{type(exc).__name__}"] += 1
            await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)] * rng.uniform(0.8, 1.2))
            attempt += 1

    async def _drain_outbox(self, phone: Phone, conn: Connection, on_downlink: Downlink) -> None:
        answer = await conn.request("GET", f"{API}/outbox", _auth(phone))
        await self._take(phone, conn, _checked(answer, phone, "outbox")["items"], on_downlink)

    async def _take(self, phone: Phone, conn: Connection, items: list[dict], on_downlink: Downlink) -> None:
        if not items:
            return
        for item in items:
            topic = _topic(phone.terminal_id, item)
            if topic is not None:
                self.downlinks.put((on_downlink, topic, orjson.dumps(item["body"])))
                phone.counts[f"downlink:{item['kind']}"] += 1
        ack = Connection(self.host, self.port, self.timeout_s)
        try:
            _checked(await ack.request("POST", f"{API}/outbox/ack", _auth(phone, json=True),
                                       orjson.dumps({"seqs": [i["seq"] for i in items]})), phone, "ack")
        finally:
            await ack.close()


def _topic(terminal_id: str, item: dict) -> str | None:
    kind = item.get("kind")
    if kind == "notice":
        return terminal_topic(terminal_id, NOTICE)
    if kind == "task":
        return terminal_topic(terminal_id, TASK)
    if kind == "announcement":
        return org_topic(item["body"]["org_code"])
    return None


def _event_data(event: bytes) -> dict | None:
    data = [line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")]
    return orjson.loads(b"".join(data)) if data else None


class _Retry(Exception):
    def __init__(self, why: str, after: float | None = None) -> None:
        super().__init__(why)
        self.after = after


def _checked(answer: Answer, phone: Phone, what: str) -> dict:
    """The answer's JSON when it is a success; a refusal that waiting may cure raises _Retry; one
    that it cannot (the phone was revoked, a bad code) stops the phone's sign-in for good."""
    if 200 <= answer.status < 300:
        return orjson.loads(answer.body) if answer.body else {}
    phone.counts[f"{what}:{answer.status}"] += 1
    if answer.status == 401:
        phone.token = None
    retry_after = answer.headers.get("retry-after")
    raise _Retry(f"{what}: {answer.status} {answer.body[:200]!r}",
                 float(retry_after) if retry_after and retry_after.isdigit() else None)


def _json_headers() -> dict[str, str]:
    return {"Content-Type": "application/json"}


def _auth(phone: Phone, json: bool = True) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {phone.token}"}
    return {**headers, "Content-Type": "application/json"} if json else headers


# --- the demo's phones ----------------------------------------------------------------------------
PHONES_FILE = "handheld-phones.json"    # in the data dir: terminal id -> an enrolment code, then credentials


def enrol_demo_phones(dsn: str, city, path, count: int) -> int:
    """Give the first `count` members (of distinct grids first) a phone: an enrolment code for each
    member that has no working phone in `path` yet (as an admin would, through the registry), kept
    in `path` for the simulator, which enrols with it and writes the phone's credentials there.
    Answers how many codes were made."""
    from registry.store import Actor, DeviceRegistry

    kept = orjson.loads(path.read_bytes()) if path.exists() else {}
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("select device_id from member_devices where kind = 'handheld' and retired_at is null")
        active = {device_id for (device_id,) in cur.fetchall()}
    conn.close()
    phones = {terminal: entry for terminal, entry in kept.items()
              if entry.get("code") or entry.get("device_id") in active}
    firsts, others, grids = [], [], set()
    for member in city.members:
        (others if member.grid_code in grids else firsts).append(member)
        grids.add(member.grid_code)
    registry, made = DeviceRegistry(dsn, None), 0
    for member in (firsts + others)[:count]:
        if member.terminal_id not in phones:
            enrolment = registry.enrol_handheld(Actor("demo"), member.member_id, "demo phone (simulated)")
            phones[member.terminal_id] = {"code": enrolment.code}
            made += 1
    path.write_bytes(orjson.dumps(phones, option=orjson.OPT_INDENT_2))
    return made


def load_phones(path) -> list[Phone]:
    """The phones `path` names: enrolled ones with their credentials, new ones with their code."""
    phones = []
    for terminal_id, entry in (orjson.loads(path.read_bytes()) if path.exists() else {}).items():
        credentials = (PhoneCredentials(entry["device_id"], entry["device_secret"], entry["pin"])
                       if entry.get("device_id") else None)
        phones.append(Phone(terminal_id, enrol_code=entry.get("code"), credentials=credentials))
    return phones


def save_phones(path, phones: list[Phone]) -> None:
    """What these phones hold (their credentials once enrolled) for the simulator's next start,
    merged into `path` (another shard's phones kept) and replaced whole (never half written)."""
    entries = orjson.loads(path.read_bytes()) if path.exists() else {}
    for phone in phones:
        if phone.credentials is not None:
            c = phone.credentials
            entries[phone.terminal_id] = {"device_id": c.device_id, "device_secret": c.device_secret, "pin": c.pin}
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(orjson.dumps(entries, option=orjson.OPT_INDENT_2))
    temporary.replace(path)

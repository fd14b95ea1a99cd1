"""The handheld bench's phones (bench/handheld_bench.py): a lean driver of N signed-in members'
phones on one asyncio loop, in a process of its own, on the simulator's own HTTP client
(simulator.httpclient, h11).

Lean on purpose: simulator.handheld's phones carry each member's whole simulation (patrols, cases,
an outbox per phone), which costs CPU the bench needs for the server; here a phone only signs in,
keeps its downlink stream open (acknowledging what comes), sends a fix every `interval_s` with the
fix's own time set when it is made, and, when the plan says so, uploads a photo and reports an
incident naming it. Each phone binds its own loopback address (127.1.x.y), so the server's
per-source limits (connections, logins) count phones as they would from the field.

The bench drives it through a pipe, one step at a time:
    ("sign_in",)                     -> ("signed_in", {ok, failed by reason, seconds})
    ("streams",)                     -> ("streams_open", {open, failed by reason, seconds})
    ("run", seconds, [ReportPlan])   -> ("ran", {fixes, answers, reports, cpu_s, ...})
    ("stop",)                        -> ("stopped", {stream events, ...})
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import random
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson

from simulator import payloads
from simulator.httpclient import Answer, Connection

API = "/handheld/api/v1"
SIGN_IN_AT_ONCE = 8          # sign-ins in flight: each is an Argon2id check (64 MiB, ~0.3 s of a core)
STREAMS_AT_ONCE = 64         # streams being opened at once
RETRY_S = (1.0, 2.0, 5.0, 10.0)
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class PhoneSpec:
    terminal_id: str
    device_id: str
    device_secret: str
    pin: str
    lon: float
    lat: float
    address: str                 # the loopback address it connects from
    token: str | None = None     # a session the bench wrote for it (--sign-ins): it does not sign in


@dataclass(frozen=True)
class ReportPlan:
    at_s: float                  # seconds after the run starts
    phone: int                   # index into the phones
    photo_path: str              # a JPEG of about 1 MB
    marker: str                  # the report's address: how the bench finds its case on the console
    category: str


@dataclass
class Phone:
    spec: PhoneSpec
    token: str | None = None
    stream_open: bool = False


def source_address(index: int) -> str:
    """Phone `index`'s own loopback address: 127.1.0.1, 127.1.0.2, … (250 to a third octet)."""
    return f"127.1.{index // 250}.{index % 250 + 1}"


@dataclass
class Tally:
    counts: Counter = field(default_factory=Counter)
    fix_answer_ms: list[float] = field(default_factory=list)
    reports: list[dict] = field(default_factory=list)
    stream_events: int = 0


class Fleet:
    def __init__(self, host: str, port: int, specs: list[PhoneSpec]) -> None:
        self.host, self.port = host, port
        self.phones = [Phone(s, token=s.token) for s in specs]
        self.tally = Tally()
        self.stopping = False
        self.open_streams = 0
        self._streams: list[asyncio.Task] = []
        self._all_open = asyncio.Event()

    def _connection(self, phone: Phone) -> Connection:
        return Connection(self.host, self.port, TIMEOUT_S, local_address=phone.spec.address)

    def _auth(self, phone: Phone, content_type: str = "application/json") -> dict[str, str]:
        return {"Authorization": f"Bearer {phone.token}", "Content-Type": content_type}

    async def _request(self, phone: Phone, method: str, path: str, headers: dict, body: bytes) -> Answer:
        conn = self._connection(phone)
        try:
            return await conn.request(method, path, headers, body)
        finally:
            await conn.close()

    async def _patient(self, what: str, phone: Phone, method: str, path: str, headers: dict, body: bytes
                       ) -> Answer:
        """A request retried as the app retries (network errors, 408, 429, 5xx), a few times."""
        answer = None
        for wait in (*RETRY_S, None):
            try:
                answer = await self._request(phone, method, path, headers, body)
                if answer.status not in (408, 429) and answer.status < 500:
                    return answer
                self.tally.counts[f"{what}_retry:{answer.status}:{_reason(answer)}"] += 1
            except (OSError, TimeoutError, ConnectionError) as exc:
                self.tally.counts[f"{what}_retry:{type(exc).__name__}"] += 1
            if wait is None:
                break
            await asyncio.sleep(wait)
        return answer if answer is not None else Answer(599, {}, b'{"error": "network"}')

    # --- sign-in --------------------------------------------------------------------------------
    async def sign_in_all(self) -> dict:
        began, gate, failed = time.monotonic(), asyncio.Semaphore(SIGN_IN_AT_ONCE), Counter()

        async def one(phone: Phone) -> None:
            async with gate:
                s = phone.spec
                answer = await self._patient("sign_in", phone, "POST", f"{API}/session",
                                             {"Content-Type": "application/json"},
                                             orjson.dumps({"device_id": s.device_id, "device_secret": s.device_secret,
                                                           "pin": s.pin}))
            if answer.status == 200:
                phone.token = orjson.loads(answer.body)["token"]
            else:
                failed[f"{answer.status} {_reason(answer)}"] += 1
        signing = [p for p in self.phones if p.token is None]
        await asyncio.gather(*(one(p) for p in signing))
        return {"ok": sum(p.token is not None for p in signing), "tried": len(signing), "failed": dict(failed),
                "seconds": time.monotonic() - began}

    # --- the downlink streams --------------------------------------------------------------------
    async def open_all_streams(self, timeout_s: float = 120.0) -> dict:
        began, gate = time.monotonic(), asyncio.Semaphore(STREAMS_AT_ONCE)
        signed_in = [p for p in self.phones if p.token is not None]
        for phone in signed_in:
            self._streams.append(asyncio.get_running_loop().create_task(self._stream(phone, gate)))
        if signed_in:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_open.wait(), timeout_s)
        return {"open": self.open_streams, "wanted": len(signed_in), "seconds": time.monotonic() - began,
                "failed": {k: n for k, n in self.tally.counts.items() if k.startswith("stream")}}

    async def _stream(self, phone: Phone, gate: asyncio.Semaphore) -> None:
        attempt = 0
        while not self.stopping:
            conn, opened = self._connection(phone), False
            try:
                async with gate:
                    pieces = aiter(conn.stream(f"{API}/stream", self._auth(phone)))
                    head = await anext(pieces)
                if head.status != 200:
                    self.tally.counts[f"stream_refused:{head.status}:{_reason(head)}"] += 1
                else:
                    opened, attempt = True, 0
                    self._opened(phone, True)
                    await self._read(phone, pieces)
                    self.tally.counts["stream_ended_by_server"] += 1
            except Exception as exc:  # noqa: BLE001 - counted by its kind: the bench reports it, the phone retries
                self.tally.counts[f"stream_error:{type(exc).__name__}"] += 1
            finally:
                if opened:
                    self._opened(phone, False)
                await conn.close()
            if not self.stopping:
                await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)] * random.uniform(0.8, 1.2))
                attempt += 1

    def _opened(self, phone: Phone, now_open: bool) -> None:
        phone.stream_open = now_open
        self.open_streams += 1 if now_open else -1
        if self.open_streams >= sum(p.token is not None for p in self.phones):
            self._all_open.set()

    async def _read(self, phone: Phone, pieces) -> None:
        """The stream's events, each acknowledged as the app does once it has kept them."""
        buffer = b""
        async for piece in pieces:
            buffer += piece
            *events, buffer = buffer.split(b"\n\n")
            seqs = [int(line[3:]) for e in events for line in e.split(b"\n") if line.startswith(b"id:")]
            self.tally.stream_events += len(seqs)
            if seqs:
                answer = await self._patient("ack", phone, "POST", f"{API}/outbox/ack", self._auth(phone),
                                             orjson.dumps({"seqs": seqs}))
                self.tally.counts[f"ack:{answer.status}"] += 1

    # --- the run ---------------------------------------------------------------------------------
    async def run(self, seconds: float, interval_s: float, plans: list[ReportPlan]) -> dict:
        loop = asyncio.get_running_loop()
        cpu0, until = _cpu_s(), loop.time() + seconds
        signed_in = [p for p in self.phones if p.token is not None]
        tasks = [loop.create_task(self._fixes(p, until, interval_s)) for p in signed_in]
        tasks += [loop.create_task(self._report(plan)) for plan in plans]
        await asyncio.gather(*tasks)
        counts = {k: n for k, n in self.tally.counts.items() if not k.startswith("stream")}
        return {"counts": counts, "fix_answer_ms": self.tally.fix_answer_ms, "reports": self.tally.reports,
                "cpu_s": _cpu_s() - cpu0, "open_streams": self.open_streams}

    async def _fixes(self, phone: Phone, until: float, interval_s: float) -> None:
        loop, rng = asyncio.get_running_loop(), random.Random(phone.spec.terminal_id)
        await asyncio.sleep(rng.uniform(0, interval_s))           # phones spread over the interval
        n = 0
        while loop.time() < until and not self.stopping:
            due = loop.time() + interval_s
            n += 1
            _, body = payloads.fix(phone.spec.terminal_id, datetime.now(timezone.utc),
                                   phone.spec.lon + 1e-5 * (n % 7), phone.spec.lat, 5.0, 1.0, 90.0, 80)
            began = time.perf_counter()
            try:
                answer = await self._request(phone, "POST", f"{API}/messages/fix", self._auth(phone), body)
                self.tally.counts[f"fix:{answer.status}" + ("" if answer.status == 200 else f":{_reason(answer)}")] += 1
                if answer.status == 200:
                    self.tally.fix_answer_ms.append((time.perf_counter() - began) * 1000)
            except (OSError, TimeoutError, ConnectionError) as exc:
                self.tally.counts[f"fix:error:{type(exc).__name__}"] += 1
            await asyncio.sleep(max(0.0, due - loop.time()))

    async def _report(self, plan: ReportPlan) -> None:
        await asyncio.sleep(plan.at_s)
        phone = self.phones[plan.phone]
        with open(plan.photo_path, "rb") as f:
            photo = f.read()
        started = time.time()                              # the photo's upload starts
        answer = await self._patient("photo", phone, "POST", f"{API}/photos", self._auth(phone, "image/jpeg"), photo)
        uploaded = time.time()
        row = {"marker": plan.marker, "started": started, "photo_status": answer.status, "photo_bytes": len(photo),
               "photo_s": uploaded - started}
        if answer.status in (200, 201):
            s = phone.spec
            body = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                    "report_id": f"r-bench-{plan.marker}", "category": plan.category, "severity": 2,
                    "lat": s.lat, "lon": s.lon, "address": plan.marker, "description": "handheld bench",
                    "photo_refs": [orjson.loads(answer.body)["ref"]]}
            stored = await self._patient("report", phone, "POST", f"{API}/messages/incident", self._auth(phone),
                                         orjson.dumps(body))
            row.update(report_status=stored.status, stored_s=time.time() - started)
        self.tally.reports.append(row)

    async def stop(self) -> dict:
        self.stopping = True
        for task in self._streams:
            task.cancel()
        await asyncio.gather(*self._streams, return_exceptions=True)
        return {"stream_events": self.tally.stream_events,
                "stream_counts": {k: n for k, n in self.tally.counts.items() if k.startswith("stream")}}


def _reason(answer: Answer) -> str:
    try:
        return str(orjson.loads(answer.body).get("error", ""))
    except (orjson.JSONDecodeError, AttributeError):
        return ""


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve(host: str, port: int, specs: list[PhoneSpec], pipe) -> None:
    """The driver process: the fleet on its loop, one step per command from the bench's pipe."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))     # two sockets a phone, and more
    loop = asyncio.new_event_loop()
    fleet = loop.run_until_complete(_fleet(host, port, specs))
    while True:
        command, *args = pipe.recv()
        if command == "sign_in":
            pipe.send(("signed_in", loop.run_until_complete(fleet.sign_in_all())))
        elif command == "streams":
            pipe.send(("streams_open", loop.run_until_complete(fleet.open_all_streams())))
        elif command == "run":
            pipe.send(("ran", loop.run_until_complete(fleet.run(*args))))
        elif command == "stop":
            pipe.send(("stopped", loop.run_until_complete(fleet.stop())))
            break
    loop.close()
    os._exit(0)          # nothing else of the bench's to finish in this process


async def _fleet(host: str, port: int, specs: list[PhoneSpec]) -> Fleet:
    return Fleet(host, port, specs)

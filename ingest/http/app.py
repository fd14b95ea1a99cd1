"""The device-facing HTTP service as a plain ASGI application (no framework), served by gunicorn's
ASGI worker (`python -m ingest.http`; the worker and its connection guard: ingest.http.protocol).

What it does with a request, in order:
- route it: a `core.http.Route` whose method and path match (a path ending in "/" is a prefix),
  else 404 not_found (405 method_not_allowed when the path exists);
- read the body itself (on the event loop, no thread held): it must say its length in ASCII
  digits (no chunked bodies: 411), within the route's `max_body` (413), each read within
  `read_timeout_s` (408); a GET without a length has an empty body;
- take one of the `max_handlers` threads in turn; while they are all busy, at most `max_queued`
  requests wait for one, others are answered 503 too_busy at once;
- answer with the route's `respond(Request)`, a blocking function run on that thread; one that
  hands a message to the chain answers a `core.http.Later`, and the request then waits for the
  commit on the event loop, its thread given back (so thousands of phones waiting for their
  commits hold no thread; few threads, since they share one interpreter lock, and past the
  database pools' size they would only wait for a connection); a `Reply` with a `stream` is sent
  as a streaming response (`body` first, then each chunk, until the stream ends, raises, the client
  goes or the service stops);
- count each refusal by its reason (gcc_ingest_http_refused).

Each gunicorn worker process runs its own ingest chain (ingest.worker.Worker fed by an
ingest.http.source.HttpSource) from the lifespan startup to the lifespan shutdown, and serves its
/metrics and /healthz on an internal port of 127.0.0.1 (ingest.http.internal), never here.

`build_app(settings, extra_routes)` is how other rooms' endpoints join: `extra_routes(deliver)`
returns their routes, `deliver` handing a delivery to this process's chain."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from core.http import MAX_LENGTH_DIGITS, Later, Refused, Reply, Request, Route, refusal
from core.throttle import Sources
from ingest.http import internal
from ingest.http.accounts import BrokerAccounts, Logins
from ingest.http.endpoints import DeviceEndpoints
from ingest.http.source import HttpSource
from ingest.model import Delivery
from ingest.service import build_chain
from ingest.worker import Worker

log = logging.getLogger(__name__)
Deliver = Callable[[Delivery], None]
BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})   # without a Content-Length: an empty body


@dataclass(frozen=True)
class Limits:
    """The service's limits (config.settings: ingest_http_*)."""
    max_handlers: int = 16            # requests worked on at once (threads); more wait their turn ...
    max_queued: int = 64              # ... this many at most: more are answered 503 at once
    connections_per_source: int = 8   # connections at once from one address; more: 429 at once
    read_timeout_s: float = 10.0      # a client that sends nothing for this long is cut off (408)
    request_deadline_s: float = 15.0  # a request not arrived whole this long after the accept: closed

    @classmethod
    def from_settings(cls, settings) -> Limits:
        return cls(settings.ingest_http_max_handlers, settings.ingest_http_max_queued,
                   settings.ingest_http_connections_per_source, settings.ingest_http_read_timeout_s,
                   settings.ingest_http_request_deadline_s)


class ConnectionCounts:
    """Open connections per source address (a trusted proxy's are not capped here: the proxy
    caps its own clients). A kept-alive connection idle between requests gives way: when an
    address is at its cap, its oldest idle connection is closed to make room (a browser keeps
    several open, and two phones' browsers behind one address more), and only an address whose
    connections are all busy is refused. Touched only on the event loop."""

    def __init__(self, per_source: int, unbounded: Callable[[str], bool]) -> None:
        self.per_source, self.unbounded = per_source, unbounded
        self.open: dict[str, list] = {}       # address -> its connections (protocols), oldest first

    def take(self, address: str, connection) -> bool:
        if self.unbounded(address):
            return True
        held = self.open.setdefault(address, [])
        if len(held) >= self.per_source:
            idle = next((c for c in held if c.idle()), None)
            if idle is None:
                return False
            self.release(address, idle)
            idle.close_idle()
        held.append(connection)
        return True

    def release(self, address: str, connection) -> None:
        held = self.open.get(address)
        if held is None or connection not in held:
            return
        held.remove(connection)
        if not held:
            del self.open[address]


class Headers:
    """An ASGI request's headers as core.http.Headers (names case-insensitive)."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._all: dict[str, list[str]] = {}
        for name, value in raw:
            self._all.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._all.get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str, default: list[str] | None = None) -> list[str] | None:
        return list(self._all.get(name.lower(), [])) or default


@dataclass
class AsgiRequest:
    """A core.http.Request whose body has been read whole already."""
    method: str
    path: str
    headers: Headers
    source: str
    content: bytes = b""

    def body(self) -> bytes:
        return self.content

    def arrived(self) -> None:
        """Nothing to do: the request deadline ends when the whole request is in (protocol)."""


def expected_length(method: str, headers: Headers, max_body: int) -> int:
    """The body's length as the request says it, by the framing rule of core.http.read_body (no
    chunked bodies; a length in ASCII digits, within `max_body`), else `Refused` with why. A GET
    (DELETE, …) without a length has none."""
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        raise Refused(refusal(411, "length_required"))
    raw = headers.get("Content-Length")
    if raw is None and method in BODYLESS:
        return 0
    digits = raw.strip() if raw is not None else None
    if digits is None or not (digits.isascii() and digits.isdigit()):   # "²".isdigit() is True
        raise Refused(refusal(411, "length_required") if raw is None else refusal(400, "bad_length"))
    if len(digits) > MAX_LENGTH_DIGITS or int(digits) > max_body:
        raise Refused(refusal(413, "payload_too_large"))
    return int(digits)


class IngestApp:
    """The ASGI application of one gunicorn worker process (see the module's docstring)."""

    def __init__(self, settings, extra_routes: Callable[[Deliver], list[Route]] | None = None,
                 build_chain: Callable[[object, HttpSource, str], Worker] | None = None) -> None:
        self.settings = settings
        self.limits = Limits.from_settings(settings)
        self.sources = Sources(settings.ingest_http_trusted_proxies)
        self.connections = ConnectionCounts(self.limits.connections_per_source, self.sources.trusted)
        self.source = HttpSource()
        self.logins = Logins(BrokerAccounts(settings.broker_credentials_file))
        self.endpoints = DeviceEndpoints(self.logins, self.source.deliver)
        self.routes = self.endpoints.routes() + (extra_routes(self.source.deliver) if extra_routes else [])
        self.build_chain = build_chain
        self.pool = ThreadPoolExecutor(self.limits.max_handlers, thread_name_prefix="ingest-http")
        self.handlers = asyncio.Semaphore(self.limits.max_handlers)     # the pool's threads, taken in turn
        self.queued = 0
        self.worker: Worker | None = None
        self.refused: Counter | None = None
        self.waiting: Gauge | None = None
        self.stopping: asyncio.Event | None = None
        self.metrics_port = 0
        self._thread: threading.Thread | None = None
        self._internal: asyncio.AbstractServer | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:   # websockets: not spoken here
            await send({"type": "websocket.close", "code": 1008})

    # --- the chain's life ---------------------------------------------------------------------------
    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # noqa: BLE001 - told to gunicorn, which stops
                    log.exception("the ingest chain could not start")
                    await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        """This process's chain: its internal port first (which names it: ingest-http-<n>), then
        the chain built (the city read: off the loop) and run in a thread."""
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        base, count = self.settings.ingest_http_metrics_port, self.settings.ingest_http_workers
        sock = internal.bind_first_free(base, count) if base else internal.bind(0)
        self.metrics_port = sock.getsockname()[1]
        name = f"ingest-http-{self.metrics_port - base + 1 if base else os.getpid()}"
        try:
            build = self.build_chain or build_chain
            self.worker = await loop.run_in_executor(None, build, self.settings, self.source, name)
        except BaseException:
            sock.close()
            raise
        self.refused = Counter("gcc_ingest_http_refused", "device HTTP requests refused, by reason",
                               ["worker", "reason"], registry=self.worker.metrics.registry)
        self.waiting = Gauge("gcc_ingest_http_waiting_for_commit", "device HTTP requests waiting for their "
                             "message's commit (no thread held)", registry=self.worker.metrics.registry)
        self._internal = await internal.serve(self.worker, sock)
        self._thread = threading.Thread(target=self.worker.run, name=name, daemon=True)
        self._thread.start()
        log.info("%s: the ingest chain runs; /metrics and /healthz on http://127.0.0.1:%d", name, self.metrics_port)

    def draining(self) -> None:
        """The service is stopping (SIGTERM): streams end now, so their connections close."""
        if self.stopping is not None:
            self.stopping.set()

    async def shutdown(self) -> None:
        """After gunicorn has waited for the open requests: the chain finishes its batch and
        stops; what still waits is answered 503 shutting_down (HttpSource.stop)."""
        self.draining()
        if self.worker is not None:
            self.worker.stop_event.set()
            if self._thread is not None:
                await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 30)
            self.source.stop()
        if self._internal is not None:
            self._internal.close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def count_refusal(self, reason: str) -> None:
        if self.refused is not None and self.worker is not None:
            self.refused.labels(worker=self.worker.name, reason=reason).inc()

    # --- one request ----------------------------------------------------------------------------
    def route(self, method: str, path: str) -> tuple[Route | None, bool]:
        """The route for this method and path (without its query), and whether the path has one."""
        known = False
        for route in self.routes:
            if path == route.path or (route.path.endswith("/") and path.startswith(route.path)):
                known = True
                if route.method == method:
                    return route, True
        return None, known

    async def _http(self, scope, receive, send) -> None:
        method = scope["method"]
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        route, known = self.route(method, path)
        if route is None:
            reply = refusal(405, "method_not_allowed") if known else refusal(404, "not_found")
        else:
            reply = await self._answer(route, scope, receive, path)
            if isinstance(reply, Later):      # it waits for the chain's commit, holding no thread
                reply = await self._waited(reply)
        if reply.refused is not None:
            self.count_refusal(reply.refused)
        await self._send(reply, receive, send)

    async def _answer(self, route: Route, scope, receive, path: str) -> Reply | Later:
        headers = Headers(scope["headers"])
        client = (scope.get("client") or ("", 0))[0]
        query = scope.get("query_string") or b""
        try:
            length = expected_length(scope["method"], headers, route.max_body)
            body = await self._read_body(receive, length)
        except Refused as refused:
            return refused.reply
        request = AsgiRequest(scope["method"], path + ("?" + query.decode("latin-1") if query else ""), headers,
                              self.sources.source(client, headers.get_all("X-Forwarded-For")), body)
        if not await self._handler():
            return refusal(503, "too_busy", headers=(("Retry-After", "1"),))
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, _respond, route, request)
        finally:
            self.handlers.release()

    async def _handler(self) -> bool:
        """One of the pool's threads for this request, in turn; False (503 at once) when max_queued
        requests already wait for one."""
        if self.handlers.locked() and self.queued >= self.limits.max_queued:
            return False
        self.queued += 1
        try:
            await self.handlers.acquire()
        finally:
            self.queued -= 1
        return True

    async def _waited(self, later: Later) -> Reply:
        """A Later's answer once it is ready (or its `timed_out` answer), waited for on the event
        loop and counted while it waits."""
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)
        later.on_done(lambda: loop.call_soon_threadsafe(wake))
        if self.waiting is not None:
            self.waiting.inc()
        try:
            await asyncio.wait_for(ready, later.timeout_s)
        except TimeoutError:
            return later.timed_out
        finally:
            if self.waiting is not None:
                self.waiting.dec()
        try:
            return later.answer()
        except Exception:
            log.exception("a waiting request's answer raised")
            return refusal(500, "internal_error")

    async def _read_body(self, receive, length: int) -> bytes:
        """The body, `length` bytes, each read within read_timeout_s; else `Refused`."""
        chunks, got, more = [], 0, length > 0
        while more:
            try:
                message = await asyncio.wait_for(receive(), self.limits.read_timeout_s)
            except TimeoutError:
                raise Refused(refusal(408, "request_timeout")) from None
            if message["type"] == "http.disconnect":
                raise Refused(refusal(400, "client_gone"))
            chunks.append(message.get("body", b""))
            got += len(chunks[-1])
            more = message.get("more_body", False) and got < length
        body = b"".join(chunks)
        if len(body) != length:
            raise Refused(refusal(400, "body_shorter_than_its_length"))
        return body

    async def _send(self, reply: Reply, receive, send) -> None:
        headers = [(b"content-type", reply.content_type.encode("latin-1"))]
        headers += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers]
        if reply.stream is None:
            headers.append((b"content-length", str(len(reply.body)).encode()))
        with contextlib.suppress(OSError):    # the client went away meanwhile
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            if reply.stream is None:
                await send({"type": "http.response.body", "body": reply.body})
                return
            await send({"type": "http.response.body", "body": reply.body, "more_body": True})
            await self._stream(reply.stream, receive, send)
            await send({"type": "http.response.body", "body": b""})

    async def _stream(self, stream: AsyncIterator[bytes], receive, send) -> None:
        """Each chunk of `stream` as it comes, until it ends, the client goes or the service
        stops; the stream is closed in every case."""
        gone = asyncio.ensure_future(_disconnected(receive))
        stopping = asyncio.ensure_future(self.stopping.wait()) if self.stopping is not None else gone
        try:
            while True:
                chunk = asyncio.ensure_future(anext(stream))
                done, _ = await asyncio.wait({chunk, gone, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if chunk not in done:
                    chunk.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                        await chunk
                    return
                try:
                    data = chunk.result()
                except StopAsyncIteration:
                    return
                except Exception:     # a bug in the stream ends this stream, never the service
                    log.exception("a reply's stream raised")
                    return
                await send({"type": "http.response.body", "body": data, "more_body": True})
        finally:
            for task in (gone, stopping):
                task.cancel()
            closing = getattr(stream, "aclose", None)
            if closing is not None:
                with contextlib.suppress(Exception):
                    await closing()


async def _disconnected(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _respond(route: Route, request: Request) -> Reply | Later:
    """The route's answer; a bug in it costs this request a 500, never the service."""
    try:
        return route.respond(request)
    except Refused as refused:
        return refused.reply
    except Exception:
        log.exception("%s %s raised", request.method, request.path.split("?")[0])
        return refusal(500, "internal_error")


def build_app(settings, extra_routes: Callable[[Deliver], list[Route]] | None = None) -> IngestApp:
    """The device-facing ASGI application: /owntracks, /osmand/<token> and `extra_routes(deliver)`
    (e.g. the handheld's: ingest.http.handheld.uplink_routes), all fed to this process's chain."""
    return IngestApp(settings, extra_routes)

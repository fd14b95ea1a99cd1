"""The ingest worker's HTTP sides, on two ports:

- the device-facing one: POST /owntracks for the OwnTracks app's HTTP mode, and GET or POST
  /osmand/<token> for Traccar Client (the OsmAnd protocol; the token is the device's credential);
- the internal one: GET /metrics (Prometheus) and GET /healthz, never reachable from devices.

An OwnTracks post authenticates with HTTP Basic auth against the broker's own accounts (its dynamic
security file: the same identity the phone would use over MQTT), only as an enabled OwnTracks or
terminal account, and may speak only for that user. Checking a password costs the same for an
unknown user. Guessing slows the guesser down instead of locking the phone out (`LoginThrottle`): an
attempt is counted before its password is checked, per (username, source), per source (behind a
trusted reverse proxy, the address it forwards for) and per username across sources (which the
sources it logged in from lately pass); a success gives its count back. A request must say its
length in ASCII digits (no chunked bodies), within the limit; it must have arrived whole
REQUEST_DEADLINE_S after its connection was accepted (then the socket is shut), each read within
READ_TIMEOUT_S; one connection is one request; the server runs at most MAX_HANDLERS requests at
once, at most CONNECTIONS_PER_SOURCE from one address (a trusted proxy's are not capped here: the
proxy must cap its own clients). The post enters the same chain as MQTT messages, and the answer
(200 with an empty JSON list, as the app expects) is sent only after the commit, so a phone keeps
and resends what was not confirmed.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import os
import socket
import threading
import time
from collections import Counter as Tally
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from core.sources import throttle_source
from ingest.model import RATE_LIMITED, Delivery, Inbound, Rejection
from ingest.worker import Worker
from telemetry.decoders import osmand
from telemetry.topics import AccountKind, owntracks_device_topic

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024
REPLY_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 10.0          # a client that sends nothing for this long is cut off ...
REQUEST_DEADLINE_S = 15.0      # ... and one whose request has not arrived whole this long after accept
MAX_HANDLERS = 64              # requests handled at once; more are answered 503 at once
CONNECTIONS_PER_SOURCE = 8     # connections at once from one address; more are answered 429 at once
FAILURES_PER_PAIR = 5          # free login attempts of one username from one source, then ...
PAIR_DELAY_S = 30.0            # ... a wait before the next, doubled after each, ...
PAIR_DELAY_MAX_S = 900.0       # ... up to this; a pair with no attempt for PAIR_FORGET_S starts over
PAIR_FORGET_S = 3600.0
FAILURES_PER_SOURCE = 20       # attempts from one source (any usernames) within FAILURE_WINDOW_S
FAILURES_PER_USERNAME = 100    # attempts at one username from all sources within FAILURE_WINDOW_S, past
KNOWN_SOURCE_S = 7 * 86400.0   # which only the sources it logged in from this lately get through
FAILURE_WINDOW_S = 300.0
THROTTLE_KEYS = 100_000        # remembered pairs, sources, usernames; past it the quiet ones are forgotten
MAX_LENGTH_DIGITS = 9          # a Content-Length longer than this is too large anyway
HTTP_KINDS = frozenset({AccountKind.OWNTRACKS, AccountKind.TERMINAL})   # who may post to /owntracks
OSMAND_KINDS = frozenset({AccountKind.OSMAND})                            # … and to /osmand/<token>


class HttpReply:
    """The receipt of an OwnTracks HTTP post: the request thread waits until the worker settles it
    (after the commit, or with the message's rejection)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.rejection: Rejection | None = None

    def settle(self, rejection: Rejection | None) -> bool:
        self.rejection = rejection
        self.done.set()
        return True


class BrokerAccounts:
    """The broker's accounts as its dynamic security plugin keeps them (PBKDF2-SHA512, salted),
    read again only when the file changed."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._loaded: tuple[float, dict[str, tuple[AccountKind | None, bytes, bytes, int]]] = (-1.0, {})
        self._dummy = (None, os.urandom(64), os.urandom(12), 101)

    def _accounts(self) -> dict[str, tuple[AccountKind | None, bytes, bytes, int]]:
        mtime = self.path.stat().st_mtime
        if mtime != self._loaded[0]:
            accounts = {}
            for client in orjson.loads(self.path.read_bytes()).get("clients", []):
                if "password" in client and not client.get("disabled", False):   # disabled: unknown
                    accounts[client["username"]] = (_kind(client), base64.b64decode(client["password"]),
                                                    base64.b64decode(client["salt"]), int(client["iterations"]))
            self._loaded = (mtime, accounts)
        return self._loaded[1]

    def check(self, username: str, password: str) -> AccountKind | None:
        """The account's kind when the password is right, else None; the same work either way."""
        if self.path is None:
            return None
        kind, digest, salt, iterations = self._accounts().get(username, self._dummy)
        tried = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
        return kind if hmac.compare_digest(tried, digest) and kind is not None else None


def _kind(client: dict) -> AccountKind | None:
    try:
        return AccountKind(client.get("textname", ""))
    except ValueError:
        return None


@dataclass(frozen=True)
class ThrottlePolicy:
    per_pair: int = FAILURES_PER_PAIR
    pair_delay_s: float = PAIR_DELAY_S
    pair_delay_max_s: float = PAIR_DELAY_MAX_S
    pair_forget_s: float = PAIR_FORGET_S
    per_source: int = FAILURES_PER_SOURCE
    per_username: int = FAILURES_PER_USERNAME
    known_source_s: float = KNOWN_SOURCE_S
    window_s: float = FAILURE_WINDOW_S


@dataclass
class _Pair:
    attempts: int
    last: float
    wait_until: float


class LoginThrottle:
    """Login attempts, counted before the password is checked (`reserve`, under one lock: guesses
    sent at once cannot outrun a budget), a success giving its count back (`succeeded`). The rule
    is the dashboard's (dashboard.accounts.reserve), kept in memory here:

    - a (username, source) pair: the phone with a stale password, or one guesser at one account.
      `per_pair` attempts are free; from then on each sets a wait before the next (`pair_delay_s`,
      doubled each time, at most `pair_delay_max_s`); a success or `pair_forget_s` of quiet starts
      it over. It slows down only that source for that username.
    - a source: one guesser trying many usernames: `per_source` attempts a `window_s`.
    - a username: guesses spread over many sources (or a shared proxy): `per_username` a window,
      past which only sources it logged in from within `known_source_s` get through, so guesses
      from elsewhere never lock a phone out of where it posts (a guesser behind the same carrier
      address still spends that source's budget).
    A refused attempt is not counted and sets no longer wait. Every username is throttled alike,
    whether or not it exists. `clock` is injected (monotonic seconds)."""

    def __init__(self, policy: ThrottlePolicy | None = None, clock=time.monotonic) -> None:
        self.policy, self.clock = policy or ThrottlePolicy(), clock
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._sources: dict[str, deque] = defaultdict(deque)
        self._users: dict[str, deque] = defaultdict(deque)
        self._known: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def reserve(self, user: str, source: str) -> str | None:
        """None: the attempt is counted and may be checked; else which budget refuses it
        ("pair", "source" or "username")."""
        policy = self.policy
        with self._lock:
            now = self.clock()
            pair = self._pairs.get((user, source))
            if pair is not None and now - pair.last >= policy.pair_forget_s and pair.wait_until <= now:
                pair = None
            if pair is not None and pair.wait_until > now:
                return "pair"
            sources = self._recent(self._sources, source, now)
            if len(sources) >= policy.per_source:   # refused before a username's entry is made: a source
                return "source"                     # past its budget adds nothing, whatever it sends
            users = self._recent(self._users, user, now)
            known = self._known.get((user, source))
            if len(users) >= policy.per_username and (known is None or now - known > policy.known_source_s):
                return "username"
            counted = (pair.attempts if pair is not None else 0) + 1
            wait_until = now
            if counted >= policy.per_pair:
                doublings = min(counted - policy.per_pair, 30)
                wait_until = now + min(policy.pair_delay_s * 2 ** doublings, policy.pair_delay_max_s)
            self._pairs[(user, source)] = _Pair(counted, now, wait_until)
            sources.append(now)
            users.append(now)
            self._bound(now)
            return None

    def succeeded(self, user: str, source: str) -> None:
        """The attempt reserved for (user, source) was right: the pair starts over, the source and
        the username get their count back, and the source is one of the username's own."""
        with self._lock:
            self._pairs.pop((user, source), None)
            for counts, key in ((self._sources, source), (self._users, user)):
                if counts.get(key):
                    counts[key].pop()
            self._known[(user, source)] = self.clock()

    def _recent(self, counts: dict[str, deque], key: str, now: float) -> deque:
        times, cutoff = counts[key], now - self.policy.window_s
        while times and times[0] <= cutoff:
            times.popleft()
        return times

    def _bound(self, now: float) -> None:
        """At most THROTTLE_KEYS of each kind: the quiet ones forgotten first, then the oldest."""
        policy = self.policy
        for table, quiet, last in (
                (self._pairs, lambda p: now - p.last >= policy.pair_forget_s and p.wait_until <= now, lambda p: p.last),
                (self._sources, lambda d: not d or d[-1] <= now - policy.window_s, lambda d: d[-1] if d else 0.0),
                (self._users, lambda d: not d or d[-1] <= now - policy.window_s, lambda d: d[-1] if d else 0.0),
                (self._known, lambda t: now - t > policy.known_source_s, lambda t: t)):
            if len(table) <= THROTTLE_KEYS:
                continue
            for key in [k for k, v in table.items() if quiet(v)]:
                del table[key]
            if len(table) > THROTTLE_KEYS // 2:      # (so the next scan is many attempts away)
                for key in sorted(table, key=lambda k: last(table[k]))[:len(table) - THROTTLE_KEYS // 2]:
                    del table[key]


class Sources:
    """Who a request comes from: the socket's address, or, when that is a trusted reverse proxy,
    the last address in X-Forwarded-For that is not itself a trusted proxy (what the proxy saw;
    what a client wrote before it is not believed)."""

    def __init__(self, trusted: tuple[str, ...] = ()) -> None:
        self.networks = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def source(self, address: str, forwarded_for: list[str] | None) -> str:
        if not forwarded_for or not self.trusted(address):
            return address
        hops = [hop.strip() for line in forwarded_for for hop in line.split(",") if hop.strip()]
        return next((hop for hop in reversed(hops) if not self.trusted(hop)), hops[0] if hops else address)


class _BoundedServer(ThreadingHTTPServer):
    """A threading server that runs at most `max_handlers` requests at once, at most
    `per_source` from one address (except from `unbounded` ones: trusted proxies)."""
    daemon_threads = True
    deadline_s = REQUEST_DEADLINE_S

    def __init__(self, address, handler, max_handlers: int, per_source: int | None = None,
                 unbounded=lambda address: False) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_handlers)
        self.per_source, self.unbounded = per_source, unbounded
        self._open: Tally[str] = Tally()
        self._open_lock = threading.Lock()

    def _turn_away(self, request, status: bytes) -> None:
        try:
            request.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        except OSError:
            pass
        finally:
            self.shutdown_request(request)

    def _take_source(self, source: str) -> bool:
        if self.per_source is None or self.unbounded(source):
            return True
        with self._open_lock:
            if self._open[source] >= self.per_source:
                return False
            self._open[source] += 1
            return True

    def _release_source(self, source: str) -> None:
        if self.per_source is None or self.unbounded(source):
            return
        with self._open_lock:
            self._open[source] -= 1
            if self._open[source] <= 0:
                del self._open[source]

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            return self._turn_away(request, b"503 Service Unavailable")
        if not self._take_source(client_address[0]):
            self._slots.release()
            return self._turn_away(request, b"429 Too Many Requests")
        try:
            super().process_request(request, client_address)
        except Exception:   # the thread did not start: give the slots back
            self._release_source(client_address[0])
            self._slots.release()
            raise
        return None

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release_source(client_address[0])
            self._slots.release()

    def handle_error(self, request, client_address):
        """A client that went away, or was cut off, mid-request: not worth a traceback."""
        log.debug("HTTP request from %s failed", client_address[0], exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """One request per connection, which must have arrived whole within the server's deadline_s
    of the accept (a timer shuts the socket: the read timeout alone is per read, so a client
    trickling a byte every few seconds would hold its thread for ever)."""
    timeout = READ_TIMEOUT_S
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.deadline = threading.Timer(self.server.deadline_s, self._cut)
        self.deadline.daemon = True
        self.deadline.start()

    def _cut(self) -> None:
        with contextlib.suppress(OSError):   # already closed
            self.request.shutdown(socket.SHUT_RDWR)

    def arrived(self) -> None:
        """The whole request is in: what remains (waiting for the commit) has its own bound."""
        self.deadline.cancel()

    def finish(self):
        self.deadline.cancel()
        super().finish()

    def log_message(self, fmt, *args):  # quiet: requests are counted, not logged
        pass

    def send(self, code: int, body: bytes = b"", content_type: str = "application/json", headers=()) -> None:
        self.close_connection = True
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class IngestHTTP:
    def __init__(self, worker: Worker, host: str, port: int, credentials_file: Path | None,
                 metrics_port: int = 0, trusted_proxies: tuple[str, ...] = ()) -> None:
        self.worker = worker
        self.accounts = BrokerAccounts(credentials_file)
        self.sources = Sources(trusted_proxies)
        self.throttle = LoginThrottle()
        registry = worker.metrics.registry
        self.refused = Counter("gcc_ingest_http_refused", "OwnTracks HTTP requests refused, by reason",
                               ["worker", "reason"], registry=registry)
        self.servers = [_BoundedServer((host, port), self._device_handler(), MAX_HANDLERS, CONNECTIONS_PER_SOURCE,
                                       self.sources.trusted),
                        _BoundedServer(("127.0.0.1", metrics_port), self._internal_handler(), 8)]
        self.threads = [threading.Thread(target=s.serve_forever, name="ingest-http", daemon=True) for s in self.servers]

    @property
    def port(self) -> int:
        """The device-facing port (OwnTracks)."""
        return self.servers[0].server_address[1]

    @property
    def metrics_port(self) -> int:
        return self.servers[1].server_address[1]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def _refuse(self, handler: _Handler, code: int, reason: str, headers=()) -> None:
        self.refused.labels(worker=self.worker.name, reason=reason).inc()
        handler.send(code, orjson.dumps({"error": reason}), headers=headers)

    def authenticate(self, header: str | None, source: str) -> tuple[str | None, str]:
        """(user, "") when the Basic credentials are those of an enabled OwnTracks or terminal
        account, else (None, why)."""
        if not header or not header.startswith("Basic "):
            return None, "no_credentials"
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            user, password = "", ""
        return self.login(user, password, source, HTTP_KINDS)

    def login(self, user: str, password: str, source: str, kinds: frozenset[AccountKind]) -> tuple[str | None, str]:
        """(user, "") when the password is that of an enabled account of one of these kinds, else
        (None, why). The attempt is counted (`LoginThrottle.reserve`) before the password is
        checked, and a throttled one is refused unchecked, the same for every username. A source
        is counted as core.sources says (an IPv6 address by its /64)."""
        counted = throttle_source(source)
        if self.throttle.reserve(user[:128], counted) is not None:
            return None, "too_many_failed_logins"
        kind = self.accounts.check(user, password)
        if kind is None or kind not in kinds:
            return None, "bad_credentials"
        self.throttle.succeeded(user[:128], counted)
        return user, ""

    def source_of(self, handler: _Handler) -> str:
        return self.sources.source(handler.client_address[0], handler.headers.get_all("X-Forwarded-For"))

    def _device_handler(self):
        outer = self

        class Device(_Handler):
            def do_GET(self):
                if self.path.startswith(f"/{osmand.PREFIX}/"):
                    return outer.handle_osmand(self)
                return outer._refuse(self, 404, "not_found")

            def do_POST(self):
                if self.path.startswith(f"/{osmand.PREFIX}/"):
                    return outer.handle_osmand(self)
                return outer.handle_owntracks(self)

        return Device

    def _internal_handler(self):
        worker = self.worker

        class Internal(_Handler):
            def do_GET(self):
                if self.path == "/metrics":
                    self.send(200, generate_latest(worker.metrics.registry), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    ok, detail = worker.health()
                    self.send(200 if ok else 503, orjson.dumps(detail))
                else:
                    self.send(404, b'{"error": "not found"}')

        return Internal

    def _body(self, handler: _Handler) -> bytes | None:
        """The request body, or None after answering why not."""
        if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
            self._refuse(handler, 411, "length_required")
            return None
        raw = handler.headers.get("Content-Length")
        digits = raw.strip() if raw is not None else None
        if digits is None or not (digits.isascii() and digits.isdigit()):   # "²".isdigit() is True
            self._refuse(handler, 411 if raw is None else 400, "length_required" if raw is None else "bad_length")
            return None
        if len(digits) > MAX_LENGTH_DIGITS or int(digits) > MAX_BODY:
            self._refuse(handler, 413, "payload_too_large")
            return None
        length = int(digits)
        body = handler.rfile.read(length)
        if len(body) != length:
            self._refuse(handler, 400, "body_shorter_than_its_length")
            return None
        return body

    def handle_owntracks(self, handler: _Handler) -> None:
        if handler.path.split("?")[0] != "/owntracks":
            return self._refuse(handler, 404, "not_found")
        user, why = self.authenticate(handler.headers.get("Authorization"), self.source_of(handler))
        if user is None:
            code = 429 if why == "too_many_failed_logins" else 401
            return self._refuse(handler, code, why, headers=[("WWW-Authenticate", 'Basic realm="owntracks"')])
        claimed = handler.headers.get("X-Limit-U")
        if claimed and claimed != user:
            return self._refuse(handler, 403, "other_user")
        body = self._body(handler)
        if body is None:
            return None
        handler.arrived()
        device = handler.headers.get("X-Limit-D")
        inbound = Inbound(owntracks_device_topic(user, device=device or "http"), body, 0, False,
                          datetime.now(timezone.utc), http_identity=(user, device))
        return self._submit(handler, inbound, b"[]")

    def _submit(self, handler: _Handler, inbound: Inbound, ok: bytes, content_type: str = "application/json") -> None:
        """Into the chain; answered after the commit (`ok`), or with the reason it was refused."""
        reply = HttpReply()
        self.worker.source.inbox.put(Delivery(inbound, reply))
        if not reply.done.wait(REPLY_TIMEOUT_S):
            return self._refuse(handler, 503, "not_stored_yet")
        if reply.rejection is not None:   # a phone sending too fast is told to slow down, not that it erred
            if reply.rejection.reason == RATE_LIMITED:
                return self._refuse(handler, 429, RATE_LIMITED, headers=(("Retry-After", "10"),))
            return self._refuse(handler, 400, reply.rejection.reason)
        handler.send(200, ok, content_type=content_type)
        return None

    def handle_osmand(self, handler: _Handler) -> None:
        """/osmand/<token>: Traccar Client's OsmAnd requests (telemetry.decoders.osmand), GET or POST.
        The token is the device's own credential (its broker account's password, of an osmand
        account); the request's id must be that device's. Answered 200 with an empty body after
        the commit, as Traccar's server answers."""
        path, _, query = handler.path.partition("?")
        parts = path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != osmand.PREFIX or not parts[1]:
            return self._refuse(handler, 404, "not_found")
        body = b""
        if handler.command == "POST" or handler.headers.get("Content-Length") is not None:
            body = self._body(handler)
            if body is None:
                return None
        handler.arrived()
        as_json = osmand.is_json(handler.headers.get("Content-Type"))
        if as_json:
            device_id, payload = osmand.json_claimed_id(body), body
        else:
            params = osmand.form_parameters(query, body)
            device_id, payload = osmand.claimed_id(params), (query.encode() if query else body)
        if not device_id:
            return self._refuse(handler, 400, "no_device_id")
        user, why = self.login(device_id, parts[1], self.source_of(handler), OSMAND_KINDS)
        if user is None:
            return self._refuse(handler, 429 if why == "too_many_failed_logins" else 401, why)
        inbound = Inbound(osmand.topic(device_id, "json" if as_json else "form"), payload, 0, False,
                          datetime.now(timezone.utc), http_identity=(device_id, None))
        return self._submit(handler, inbound, b"", "text/plain")

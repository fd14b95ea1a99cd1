"""A bounded HTTP server (standard library threads) for short requests from untrusted clients.

A request must have arrived whole REQUEST_DEADLINE_S after its connection was accepted (then the
socket is shut), each read within READ_TIMEOUT_S; one connection is one request; the server runs at
most `max_handlers` requests at once (more are answered 503 at once), at most `per_source` from one
address (more: 429 at once; a trusted proxy's are not capped here: the proxy must cap its own
clients). What a request gets is a function's (`serving`): it reads a core.http.Request
and answers a Reply, so the endpoints behind it know nothing of this server."""
from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections import Counter as Tally
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from core.http import Reply, read_body

log = logging.getLogger(__name__)
READ_TIMEOUT_S = 10.0          # a client that sends nothing for this long is cut off ...
REQUEST_DEADLINE_S = 15.0      # ... and one whose request has not arrived whole this long after accept
MAX_HANDLERS = 64              # requests handled at once; more are answered 503 at once
CONNECTIONS_PER_SOURCE = 8     # connections at once from one address; more are answered 429 at once


class BoundedServer(ThreadingHTTPServer):
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


class RequestHandler(BaseHTTPRequestHandler):
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


class HandlerRequest:
    """A core.http.Request over this server's handler; `source` is decided by the
    caller (who knows the trusted proxies)."""

    def __init__(self, handler: RequestHandler, source: str) -> None:
        self.handler, self.source = handler, source
        self.method, self.path, self.headers = handler.command, handler.path, handler.headers

    def body(self) -> bytes:
        return read_body(self.handler.headers, self.handler.rfile)

    def arrived(self) -> None:
        self.handler.arrived()


def serving(respond: Callable[[RequestHandler], Reply], methods: tuple[str, ...]) -> type[RequestHandler]:
    """A handler class answering `methods` (others: 501) with what `respond` replies."""
    def answer(handler: RequestHandler) -> None:
        reply = respond(handler)
        handler.send(reply.status, reply.body, reply.content_type, reply.headers)

    return type("Serving", (RequestHandler,), {f"do_{method}": answer for method in methods})

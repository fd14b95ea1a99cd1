"""gunicorn's ASGI worker with the two limits its protocol lacks, enforced before a request reaches
the application (ingest.http.app.IngestApp, whose `limits` and `connections` they read), and
one refusal its parser forgets (a Content-Length of more digits than int() takes: 413):

- at most `connections_per_source` connections at once from one address (a trusted proxy's are
  not capped): one more closes that address's oldest kept-alive connection idle between
  requests, or, when all are busy, is answered 429 at once and closed (ConnectionCounts);
- the request deadline: a request that has not arrived whole (headers and body)
  `request_deadline_s` after its first byte (the first request's: after the accept) closes the
  connection, so a client trickling a byte every few seconds cannot hold it (gunicorn's own
  timeouts are per read, and none covers a request's head). A kept-alive connection waiting
  for its next request is gunicorn's keep-alive timeout's (`ingest_http_keepalive_s`); its next
  request's first byte arms the deadline again.

Kept small on purpose, and every part of it is proved by tests/integration/test_owntracks_http_abuse.py
against the real service: a gunicorn upgrade that moves these hooks fails a test. gunicorn's worker
builds its protocol by the module name `ASGIProtocol` in gunicorn.workers.gasgi; this worker points
that name at ours in its own process, at its start."""
from __future__ import annotations

import orjson
from gunicorn.asgi.protocol import ASGIProtocol
from gunicorn.workers import gasgi


def _answer(status: bytes, reason: str, extra: bytes = b"") -> bytes:
    """A refusal written before any application sees the request (JSON, as the app's are)."""
    body = orjson.dumps({"error": reason})
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n" + extra + b"Connection: close\r\n\r\n" + body)


_TOO_MANY = _answer(b"429 Too Many Requests", "too_many_connections", b"Retry-After: 5\r\n")
_TOO_LARGE = _answer(b"413 Content Too Large", "payload_too_large")


class GuardedProtocol(ASGIProtocol):
    """ASGIProtocol with the per-source cap and the request deadline (see the module)."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        app = self.worker.asgi
        peer = transport.get_extra_info("peername")
        self._source = None
        self._deadline = None
        address = peer[0] if isinstance(peer, tuple) and peer else ""
        if not app.connections.take(address, self):
            app.count_refusal("too_many_connections")
            self._safe_write(_TOO_MANY)
            self._close_transport()
            return
        self._source = address
        self._arm_deadline()

    def _arm_deadline(self) -> None:
        self._deadline = self.worker.loop.call_later(self.worker.asgi.limits.request_deadline_s, self._past_deadline)

    def data_received(self, data) -> None:
        """A kept-alive connection's next request begins: it has the deadline too."""
        if self._deadline is None and self._source is not None and data and not self._closed:
            self._arm_deadline()
        super().data_received(data)

    def idle(self) -> bool:
        """Kept alive between requests: answered at least once, nothing of a next request arrived."""
        return (self._awaiting_request and self.req_count > 1 and not self._finishing_calls
                and self._deadline is None and not self._closed)

    def close_idle(self) -> None:
        """Closed to make room for another connection of its address (ConnectionCounts), as
        gunicorn's keep-alive timeout closes it: its count is already given back."""
        self._source = None
        self._close_transport()
        if self._request_ready is not None:
            self._request_ready.set()

    def _past_deadline(self) -> None:
        self._deadline = None
        if not self._closed:
            self.worker.asgi.count_refusal("request_deadline")
            self._close_transport()
            if self._request_ready is not None:
                self._request_ready.set()     # the connection's loop sees it closed at once

    def _feed_callback_parser(self, data):
        """gunicorn's parser reads Content-Length with int(), which raises ValueError past 4,300
        digits (CPython's limit), unanswered: such a length is too large for any route."""
        try:
            return super()._feed_callback_parser(data)
        except ValueError:
            self.worker.asgi.count_refusal("payload_too_large")
            self._safe_write(_TOO_LARGE)
            self._close_transport()
            return False

    def _on_message_complete(self):
        """The whole request is in: what remains (the answer) has its own bounds."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        return super()._on_message_complete()

    def connection_lost(self, exc) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()
            self._deadline = None
        if getattr(self, "_source", None) is not None:
            self.worker.asgi.connections.release(self._source, self)
            self._source = None
        super().connection_lost(exc)


class GuardedWorker(gasgi.ASGIWorker):
    """gunicorn's ASGI worker serving GuardedProtocol; SIGTERM also tells the app to end its
    streams (gunicorn waits for open connections before the lifespan shutdown)."""

    def init_process(self) -> None:
        if getattr(gasgi, "ASGIProtocol", None) is not ASGIProtocol:
            raise RuntimeError("gunicorn.workers.gasgi no longer builds its protocol as ASGIProtocol: "
                               "ingest.http.protocol must follow it")
        gasgi.ASGIProtocol = GuardedProtocol
        super().init_process()

    def handle_exit_signal(self) -> None:
        super().handle_exit_signal()
        self.asgi.draining()

    def handle_quit_signal(self) -> None:
        super().handle_quit_signal()
        self.asgi.draining()

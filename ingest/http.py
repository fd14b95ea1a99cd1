"""The ingest worker's HTTP side: /metrics (Prometheus), /healthz, and POST /owntracks for the
OwnTracks app's HTTP mode.

An OwnTracks post authenticates with HTTP Basic auth against the broker's own password file (the
same identity the phone would use over MQTT) and may speak only for that user. It enters the same
chain as MQTT messages; the answer (200 with an empty JSON list, as the app expects) is sent only
after the message is committed, so a phone keeps and resends what was not confirmed.
"""
from __future__ import annotations

import base64
import logging
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.model import Delivery, Inbound, Rejection
from ingest.worker import Worker
from telemetry.passwords import read_password_file, verify_password
from telemetry.topics import OWNTRACKS_PREFIX

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024
REPLY_TIMEOUT_S = 15.0


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


class IngestHTTP:
    def __init__(self, worker: Worker, host: str, port: int, password_file: Path | None) -> None:
        self.worker = worker
        self.password_file = password_file
        self._passwords: tuple[float, dict[str, str]] = (-1.0, {})  # (mtime, user -> hash)
        handler = self._handler_class()
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="ingest-http", daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def authenticate(self, header: str | None) -> str | None:
        if not header or not header.startswith("Basic ") or self.password_file is None:
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        stored = self._password_hashes().get(user)
        return user if stored and verify_password(stored, password) else None

    def _password_hashes(self) -> dict[str, str]:
        """The broker's password file, read again only when it changed (accounts come and go)."""
        mtime = self.password_file.stat().st_mtime
        if mtime != self._passwords[0]:
            self._passwords = (mtime, read_password_file(self.password_file))
        return self._passwords[1]

    def _handler_class(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):  # quiet: requests are counted, not logged
                pass

            def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/metrics":
                    self._send(200, generate_latest(outer.worker.metrics.registry), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    ok = outer.worker.source.connected.is_set()
                    self._send(200 if ok else 503, b'{"broker": "%s"}' % (b"up" if ok else b"down"))
                else:
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self):
                if self.path.split("?")[0] != "/owntracks":
                    return self._send(404, b'{"error": "not found"}')
                user = outer.authenticate(self.headers.get("Authorization"))
                if user is None:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="owntracks"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                claimed = self.headers.get("X-Limit-U")
                if claimed and claimed != user:
                    return self._send(403, b'{"error": "X-Limit-U names another user"}')
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    return self._send(413, b'{"error": "payload too large"}')
                body = self.rfile.read(length)
                reply = HttpReply()
                device = self.headers.get("X-Limit-D")
                inbound = Inbound(f"{OWNTRACKS_PREFIX}/{user}/{device or 'http'}", body, 0, False,
                                  datetime.now(timezone.utc), http_identity=(user, device))
                outer.worker.source.inbox.put(Delivery(inbound, reply))
                if not reply.done.wait(REPLY_TIMEOUT_S):
                    return self._send(503, b'{"error": "not stored yet; send again"}')
                if reply.rejection is not None:
                    detail = f'{{"error": "{reply.rejection.reason}"}}'.encode()
                    return self._send(400, detail)
                self._send(200, b"[]")

        return Handler

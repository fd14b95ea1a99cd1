"""An ingest chain's internal port, 127.0.0.1 only: GET /metrics (Prometheus) and GET /healthz.

A few lines of asyncio rather than a server of its own: one request per connection, its head
read within READ_TIMEOUT_S and at most MAX_HEAD bytes, answered at once and closed. It runs on the
event loop of a gunicorn worker of the HTTP service (`serve`), or on a loop in a thread of its own
in an MQTT ingest worker (`InternalPort.start`). Never on the port the devices reach."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.worker import Worker

log = logging.getLogger(__name__)
READ_TIMEOUT_S = 5.0
MAX_HEAD = 8192
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def answer(worker: Worker, method: str, path: str) -> tuple[int, bytes, str]:
    """(status, body, content type) for one request to the internal port."""
    if method != "GET":
        return 405, b'{"error": "method_not_allowed"}', "application/json"
    if path == "/metrics":
        return 200, generate_latest(worker.metrics.registry), CONTENT_TYPE_LATEST
    if path == "/healthz":
        ok, detail = worker.health()
        return (200 if ok else 503), orjson.dumps(detail), "application/json"
    return 404, b'{"error": "not_found"}', "application/json"


async def _exchange(worker: Worker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            method, path, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            status, body, content_type = answer(worker, method, path.split("?", 1)[0])
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return
        except (asyncio.LimitOverrunError, ValueError):
            status, body, content_type = 400, b'{"error": "bad_request"}', "application/json"
        writer.write(f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
    finally:
        writer.close()


async def serve(worker: Worker, sock: socket.socket) -> asyncio.AbstractServer:
    """Serve `worker`'s /metrics and /healthz on the running loop, on a bound socket."""
    return await asyncio.start_server(lambda r, w: _exchange(worker, r, w), sock=sock, limit=MAX_HEAD)


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:`port` (0: any free port); OSError when it is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(16)
    except OSError:
        sock.close()
        raise
    return sock


def bind_first_free(first: int, count: int) -> socket.socket:
    """The first of ports first .. first + count - 1 that is free: each process of the HTTP service
    takes one (a restarted process the one its predecessor left)."""
    for port in range(first, first + max(count, 1)):
        with contextlib.suppress(OSError):
            return bind(port)
    raise OSError(f"no free internal port in {first}..{first + count - 1}")


class InternalPort:
    """The internal port of an MQTT ingest worker (`python -m ingest`): a loop in a thread."""

    def __init__(self, worker: Worker, port: int) -> None:
        self.worker = worker
        self.sock = bind(port)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="ingest-internal", daemon=True)
        self._server: asyncio.AbstractServer | None = None

    @property
    def metrics_port(self) -> int:
        return self.sock.getsockname()[1]

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._server = self.loop.run_until_complete(serve(self.worker, self.sock))
        self.loop.run_forever()
        self._server.close()
        self.loop.run_until_complete(self._server.wait_closed())
        self.loop.close()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        else:
            self.sock.close()

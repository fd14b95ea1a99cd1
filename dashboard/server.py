"""The dashboard's production server: gunicorn, ONE worker process with threads, simple-websocket.

This is what Flask-SocketIO documents for its threading mode (docs/deployment.rst, "Gunicorn Web
Server": `gunicorn -w 1 --threads 100 module:app`, with simple-websocket for the WebSocket
transport). One worker process, because the live hub (dashboard/hub.py) keeps its rooms, frame
numbers and snapshots in the process, and gunicorn cannot send a screen back to the process that
holds its session; more processes would mean several single-worker servers behind a load balancer.

- The master binds the port and supervises; the worker builds the app and starts the hub, so the
  hub runs exactly once, in the process that serves. The worker dies with the master (Linux
  parent-death signal): a master killed outright leaves no worker holding the port.
- Each open WebSocket holds one worker thread for as long as it is open (gthread runs the WSGI
  call for the whole session), so there are SCREENS_MAX threads for screens plus HTTP_THREADS for
  page loads and callbacks, and a WebSocket beyond SCREENS_MAX is refused (503) rather than left
  to take the threads that pages need.
- SIGTERM (and SIGINT, SIGQUIT): the worker stops the hub and cuts every WebSocket off before its
  graceful stop, which would otherwise wait for sockets that never end by themselves.
- Limits: request line, header count and size (gunicorn), request bodies and Socket.IO messages
  (dashboard.app), and each WebSocket message before it is buffered whole (below). A socket that
  answers no ping is closed, TCP connection and all; one that stops reading is cut off by the hub.
"""
from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import logging
import os
import signal
import socket
import threading

from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker

from config.settings import Settings
from dashboard.hub import abort_connection, connection_of

log = logging.getLogger(__name__)

SCREENS_MAX = 128          # open WebSockets (screens) at once; each holds a worker thread while open
HTTP_THREADS = 32          # threads kept for pages and callbacks beyond the screens'
GRACEFUL_STOP_S = 10       # a worker told to stop is killed when it has not within this
_PR_SET_PDEATHSIG = 1


class WebSocketGate:
    """The outermost WSGI layer: counts the open WebSockets, refuses one beyond `limit` with 503,
    and can cut them all off (at shutdown)."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.lock = threading.Lock()
        self.open: dict[int, object] = {}   # id(environ) -> the connection

    def __call__(self, environ, start_response):
        if environ.get("HTTP_UPGRADE", "").lower() != "websocket":
            return self.app(environ, start_response)
        key = id(environ)
        with self.lock:
            admitted = len(self.open) < self.limit
            if admitted:
                self.open[key] = connection_of(environ)
        if not admitted:
            log.warning("refused a WebSocket from %s: %d are open already", environ.get("REMOTE_ADDR"), self.limit)
            start_response("503 Service Unavailable", [("Content-Type", "text/plain"), ("Retry-After", "10")])
            return [b"too many screens are connected\n"]
        try:
            return self.app(environ, start_response)   # returns when the WebSocket has closed
        finally:
            with self.lock:
                self.open.pop(key, None)

    def cut_off_all(self) -> None:
        with self.lock:
            connections = list(self.open.values())
        for connection in connections:
            abort_connection(connection)


class _DaemonThread(threading.Thread):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs, daemon=True)


def harden_websockets(eio, max_bytes: int) -> None:
    """engine.io's simple-websocket transport, with two fixes (on this server's engine.io only):
    - a message size limit: engine.io hands simple-websocket none, and checks its own
      (max_http_buffer_size) only on a message already buffered whole, so a client could make the
      server buffer an endless message; simple-websocket closes with 1009 beyond `max_bytes`;
    - a session that engine.io ends (a client that answers no ping) ends its TCP connection: else a
      peer that sends nothing keeps the transport's reader, and the worker thread it runs on,
      waiting for ever (it has no timeout: engine.io looks for a socket attribute this transport
      does not have)."""
    websocket = eio._async.get("websocket")   # the transport class of engine.io's async driver
    if not isinstance(websocket, type):
        log.warning("engine.io's WebSocket transport is %r: WebSocket messages are not bounded", websocket)
        return

    class ScreenWebSocket(websocket):
        def __init__(self, handler, server, **kwargs):
            # its reader a daemon thread too (engine.io's are): one stuck on a silent peer never
            # keeps a stopping worker from exiting
            super().__init__(handler, server, **{"max_message_size": max_bytes, "thread_class": _DaemonThread,
                                                 **kwargs})

        def close(self):   # called by engine.io's writer thread when the session has ended
            ended_here = self.ws.connected     # False: the client closed it (and its reader is done)
            try:
                super().close()
            finally:
                if ended_here:
                    with contextlib.suppress(OSError):
                        self.ws.sock.shutdown(socket.SHUT_RDWR)

    eio._async = {**eio._async, "websocket": ScreenWebSocket}   # this server's copy, not the driver's


def _die_with_master(arbiter, worker) -> None:
    """gunicorn's post_fork hook, in the worker: SIGKILL when the master dies (nothing in the worker
    outlives it: the hub's state is rebuilt from Redis and the database by the next start)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != arbiter.pid:   # the master died before the line above
        os._exit(1)


def _report_a_slow_exit(arbiter, worker) -> None:
    """gunicorn's worker_exit hook, in the worker: if its threads keep it from exiting for a few
    seconds, say which (their stacks to stderr) before the master kills it."""
    faulthandler.dump_traceback_later(3, exit=False)


class ScreenWorker(ThreadWorker):
    """gunicorn's threaded worker, which stops the live hub and cuts every WebSocket off as soon as
    it is told to stop. Called in the signal handler: both take only locks that the worker's main
    thread (gunicorn's poll loop) never holds, so they cannot deadlock on it."""

    def handle_exit(self, sig, frame):   # SIGTERM: graceful
        super().handle_exit(sig, frame)
        self._end_screens()

    def handle_quit(self, sig, frame):   # SIGINT, SIGQUIT: at once
        self._end_screens()
        super().handle_quit(sig, frame)

    def _end_screens(self) -> None:
        served = self.app
        if getattr(served, "hub", None) is not None:
            served.hub.stop()
        if getattr(served, "gate", None) is not None:
            served.gate.cut_off_all()


def gunicorn_options(settings: Settings) -> dict:
    host = f"[{settings.dashboard_host}]" if ":" in settings.dashboard_host else settings.dashboard_host
    return {
        "bind": [f"{host}:{settings.dashboard_port}"],
        "workers": 1,                          # see the module's docstring
        "worker_class": ScreenWorker,
        "threads": SCREENS_MAX + HTTP_THREADS,
        "preload_app": False,                  # the app and its hub are built in the worker
        "post_fork": _die_with_master,
        "worker_exit": _report_a_slow_exit,
        "timeout": 30,                         # a worker whose main loop is stuck this long is replaced
        "graceful_timeout": GRACEFUL_STOP_S,
        "keepalive": 2,
        "limit_request_line": 4094,            # our longest URL is a socket's: ~100 bytes
        "limit_request_fields": 64,            # a browser sends ~20
        "limit_request_field_size": 8190,
        "control_socket_disable": True,        # no gunicornc socket in $HOME: the supervisor manages us
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
    }


class DashboardServer(BaseApplication):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub = None
        self.gate = None
        super().__init__()

    def load_config(self) -> None:
        for name, value in gunicorn_options(self.settings).items():
            self.cfg.set(name, value)

    def load(self):
        """In the worker: the app, its limits, and the hub, started once."""
        from dashboard.app import SOCKET_MESSAGE_MAX_BYTES, create_app

        app, socketio, hub = create_app(self.settings)
        harden_websockets(socketio.server.eio, SOCKET_MESSAGE_MAX_BYTES)
        self.gate = WebSocketGate(app.server.wsgi_app, SCREENS_MAX)
        app.server.wsgi_app = self.gate
        self.hub = hub
        hub.start()
        return app.server


def serve(settings: Settings) -> None:
    """Serve until stopped (SIGTERM, SIGINT)."""
    DashboardServer(settings).run()

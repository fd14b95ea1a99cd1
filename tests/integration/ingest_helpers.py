"""Helpers for the ingest tests: a worker in a thread or a process, a loaded city, publishers."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import orjson
import psycopg2

from config.settings import REPO_ROOT
from stack import free_port

from .mqtt_helpers import MqttProbe


def fix_payload(t: datetime, lon: float, lat: float, **extra) -> bytes:
    return orjson.dumps({"ts": t.isoformat().replace("+00:00", "Z"), "lat": lat, "lon": lon, **extra})




def count(db, sql: str, *args) -> int:
    db.rollback()
    with db.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0]


def owner_rows(stack, query: str, *args) -> list[tuple]:
    """The rows of a query, read as the database's owner (what a test checks; no app role reads all)."""
    return rows(stack.settings().pg_dsn, query, args)


def rows(dsn: str, query: str, args=()) -> list[tuple]:
    """The rows of a query on the database `dsn` names (a test's own database, or as an app's role)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall()
    finally:
        conn.close()


def worker_account(stack, index: int):
    """Ingest worker `index`'s own broker account (created on first use)."""
    from telemetry.topics import AccountKind

    return stack.service_account(AccountKind.INGEST, f"ingest-{index}")


def subscribed(source) -> threading.Event:
    """An event set when the broker confirms an ingest source's subscriptions (its SUBACK): from
    then on the broker routes to it (or, while it is away, queues for its session)."""
    event = threading.Event()
    source.client.on_subscribe = lambda client, userdata, mid, reason_codes, properties: event.set()
    return event


class ThreadWorker:
    """An MQTT ingest worker running in this process (for tests that look inside it), logged in
    with its own account, its /metrics and /healthz on `metrics_port`."""

    def __init__(self, stack, index: int, share_group: str, end_session: bool = True) -> None:
        from ingest.http.internal import InternalPort
        from ingest.service import build_worker

        settings = stack.app_settings("ingest", worker_account(stack, index))   # least privilege, as deployed
        self.worker = build_worker(settings, index)
        self.internal = InternalPort(self.worker, free_port())
        self.worker.source.filters = [f.replace("$share/ingest/", f"$share/{share_group}/")
                                      for f in self.worker.source.filters]
        self.thread = threading.Thread(target=self.worker.run, kwargs={"end_session": end_session}, daemon=True)
        self.subscribed = subscribed(self.worker.source)

    @property
    def metrics_port(self) -> int:
        return self.internal.metrics_port

    def __enter__(self):
        self.internal.start()
        self.thread.start()
        assert self.worker.source.connected.wait(10), "worker did not connect to the broker"
        assert self.subscribed.wait(10), "the broker did not confirm the worker's subscriptions"
        return self

    def __exit__(self, *exc):
        self.worker.stop_event.set()
        self.thread.join(15)
        self.internal.stop()


class ProcessWorker:
    """`python -m ingest --index N` as a separate process (for crash tests)."""

    def __init__(self, stack, index: int, log_path) -> None:
        self.metrics_port = free_port()
        self.env = {**os.environ, **stack.app_env("ingest", worker_account(stack, index)),
                    "GCC_INGEST_METRICS_PORT": str(self.metrics_port - index + 1)}
        self.index = index
        self.log_path = log_path
        self.proc = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "ingest", "--index", str(self.index)],
                                         cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


class HttpService:
    """The device-facing HTTP service, `python -m ingest.http` (gunicorn, its ASGI worker), as a
    process of the test on free ports, with the ingest's database role and Redis user and no
    broker account; `settings`: GCC_ settings of its own (e.g. ingest_http_request_deadline_s=3);
    `routes`: "module:function" giving the routes beside the device endpoints (see
    ingest.http.__main__.main). Started, it answers on `port`; its /metrics and /healthz are on
    `metrics_port` (its first process's)."""

    def __init__(self, stack, log_path, routes: str | None = None, env: dict | None = None, **settings) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        self.stack, self.log_path = stack, log_path
        self.env = {**os.environ, **stack.app_env("ingest"), "GCC_INGEST_HTTP_PORT": str(self.port),
                    "GCC_INGEST_HTTP_METRICS_PORT": str(self.metrics_port), "PYTHONUNBUFFERED": "1",
                    **{f"GCC_{key.upper()}": str(value) for key, value in settings.items()}, **(env or {})}
        if routes is None:
            self.command = [sys.executable, "-m", "ingest.http"]
        else:
            module, function = routes.split(":")
            self.command = [sys.executable, "-c", f"from ingest.http.__main__ import main; from {module} import "
                                                  f"{function}; raise SystemExit(main({function}))"]
        self.proc = None

    def start(self, timeout: float = 60.0):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command, cwd=REPO_ROOT, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT)
        from ..support import wait_for

        def ready() -> bool:
            assert self.proc.poll() is None, f"the HTTP service exited: {self.log_tail()}"
            return self.health()[0] == 200

        wait_for(ready, timeout, "the HTTP service to answer its health check")
        return self

    def health(self) -> tuple[int, dict]:
        """/healthz: (status, detail); (0, {}) while nothing answers."""
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=2) as response:
                return response.status, orjson.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, orjson.loads(err.read())
        except OSError:
            return 0, {}

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(open(self.log_path, encoding="utf-8", errors="replace").read().splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> int | None:
        """SIGTERM (gunicorn's graceful stop); its exit code."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode if self.proc is not None else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class FixPublisher:
    """Publishes numbered fixes from one terminal in a thread; remembers what the broker acked."""

    def __init__(self, port: int, account, lon: float, lat: float, start: datetime) -> None:
        self.probe = MqttProbe(port, account.username, account.password)
        self.account = account
        self.lon, self.lat, self.start = lon, lat, start
        self.acked: list[datetime] = []
        self.stopped = threading.Event()

    def publish(self, n: int, offset: int = 0, hold: tuple[int, threading.Event] | None = None) -> None:
        """Fixes number offset .. offset + n - 1, each after the broker acknowledged the one before;
        `hold` (i, event): before fix i, wait for the event (the test breaks something mid-stream)."""
        for i in range(offset, offset + n):
            if hold is not None and i == hold[0]:
                assert hold[1].wait(120), "the test never let the publisher go on"
            t = self.start + timedelta(seconds=i)
            reason = self.probe.publish(f"gcc/v1/terminal/{self.account.username}/fix",
                                        fix_payload(t, self.lon, self.lat, battery_pct=50))
            if reason == "Success":
                self.acked.append(t)

    def close(self) -> None:
        self.probe.close()


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


class RecordingReceipt:
    """A delivery's receipt that records how it was settled (None: taken; else the rejection)."""

    def __init__(self) -> None:
        self.settled: list = []

    def settle(self, rejection) -> bool:
        self.settled.append(rejection)
        return True


@contextmanager
def fed_by_a_worker(stack, board, index: int):
    """`board` (a dashboard process) started, fed by an ingest worker of its own in a fresh share
    group; stopped afterwards."""
    with ThreadWorker(stack, index=index, share_group=f"t{uuid.uuid4().hex[:8]}") as worker:
        board.worker = worker
        board.start()
        try:
            yield board
        finally:
            board.stop()

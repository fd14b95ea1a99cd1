"""The device-facing service itself (`python -m ingest.http`, gunicorn's ASGI worker, ingest.http.app):
routes (404, 405), the cap on requests handled at once (503 at once), refusals counted by reason,
a health that says the chain is fed by HTTP only, a streaming reply (its chunks as they come, the
stream closed when the client goes), and SIGTERM: the request in flight is answered, then it stops."""
from __future__ import annotations

import asyncio
import base64
import logging
import signal
import socket
import threading
import urllib.error
import urllib.request
import uuid

import psycopg2
import pytest

from core.http import Reply, Route
from registry.dynsec import BrokerAccount
from telemetry.topics import AccountKind

from ..support import wait_for
from .ingest_helpers import HttpService, owner_rows

log = logging.getLogger("test.stream")


def stream_routes(deliver):
    """A route that streams (run inside the service): GET /test/stream?n=3 sends three chunks and
    ends; ?n=0 sends three and then stays open until the client goes, and logs when its stream is
    closed."""

    async def ticks(n: int):
        i = 0
        try:
            while i < (n or 3):
                i += 1
                yield f"data: {i}\n\n".encode()
            if n == 0:
                await asyncio.Event().wait()       # nothing more: open until the server closes it
        finally:
            log.warning("stream closed after %d chunks", i)

    def respond(request):
        n = int(request.path.partition("n=")[2] or 0)
        return Reply(200, b": open\n\n", "text/event-stream", stream=ticks(n))

    return [Route("GET", "/test/stream", respond)]


@pytest.fixture(scope="module")
def service(stack, city, tmp_path_factory):
    with HttpService(stack, tmp_path_factory.mktemp("server") / "ingest-http.log",
                     routes=f"{__name__}:stream_routes") as running:
        yield running


def _status(url: str, method: str = "GET", data: bytes | None = None, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method, headers=headers),
                                    timeout=20) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_an_unknown_path_is_404_a_wrong_method_405_and_each_refusal_is_counted(service):
    assert _status(f"http://127.0.0.1:{service.port}/nothing-here") == 404
    assert _status(f"http://127.0.0.1:{service.port}/owntracks") == 405          # GET: only POST is
    metrics = service.metrics()
    assert 'gcc_ingest_http_refused_total{reason="not_found",worker="ingest-http-1"}' in metrics
    assert 'reason="method_not_allowed"' in metrics


def test_health_says_the_chain_is_fed_by_http_only(service):
    status, detail = service.health()
    assert status == 200 and detail["broker"].startswith("not used"), detail


def test_a_streaming_reply_sends_each_chunk_as_it_comes_and_ends_with_its_stream(service):
    with urllib.request.urlopen(f"http://127.0.0.1:{service.port}/test/stream?n=3", timeout=20) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.read() == b": open\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\n"


def test_a_stream_is_closed_when_its_client_goes(service):
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(b"GET /test/stream?n=0 HTTP/1.1\r\nHost: x\r\n\r\n")
        seen = b""
        while b"data: 3" not in seen:
            seen += sock.recv(4096)
    wait_for(lambda: "stream closed after" in service.log_tail(50), 20, "the stream to be closed")


def test_requests_past_the_cap_are_answered_503_at_once(stack, city, tmp_path):
    """One thread and no queue: a phone's request holding the thread (its session lookup waits on a
    lock the test holds) leaves the next request nothing but 503 too_busy, at once."""
    one = {"ingest_http_max_handlers": 1, "ingest_http_max_queued": 0}
    with HttpService(stack, tmp_path / "ingest-http.log", **one) as small:
        me = f"http://127.0.0.1:{small.port}/handheld/api/v1/me"
        locker = psycopg2.connect(stack.settings().pg_dsn)
        held = threading.Thread(target=_status, args=(me,), kwargs={"token": "a-token"}, daemon=True)
        try:
            with locker.cursor() as cur:
                cur.execute("lock table handheld_sessions in access exclusive mode")
            held.start()
            wait_for(lambda: owner_rows(stack, "select count(*) from pg_locks l join pg_class c on c.oid = l.relation "
                                               "where c.relname = 'handheld_sessions' and not l.granted") == [(1,)],
                     10, "the phone's session lookup to wait for the lock (its request holding the one thread)")
            assert _status(me) == 503
        finally:
            locker.rollback()
            locker.close()
        held.join(30)
        assert 'reason="too_busy"' in small.metrics()


def test_a_request_still_sending_its_body_holds_no_thread(stack, city, tmp_path):
    """A body is read on the event loop: with one thread, a client that never finishes its body
    keeps nobody else from being answered."""
    one = {"ingest_http_max_handlers": 1, "ingest_http_max_queued": 0}
    with HttpService(stack, tmp_path / "ingest-http.log", **one) as small, \
            socket.create_connection(("127.0.0.1", small.port), timeout=10) as held:
        held.sendall(b"POST /owntracks HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n[")   # the rest: never
        for _ in range(3):
            assert _status(f"http://127.0.0.1:{small.port}/owntracks", "POST", b"[]") == 401   # answered


def test_sigterm_answers_the_request_in_flight_then_stops(stack, city, tmp_path):
    phone = BrokerAccount.generate(f"ot-{uuid.uuid4().hex[:6]}", AccountKind.OWNTRACKS)
    stack.add_broker_accounts([phone])
    auth = base64.b64encode(f"{phone.username}:{phone.password}".encode())
    service = HttpService(stack, tmp_path / "ingest-http.log").start()
    try:
        with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
            sock.sendall(b"POST /owntracks HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + auth
                         + b"\r\nContent-Length: 2\r\n\r\n[")
            service.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: "Waiting for 1 connections to finish" in service.log_tail(50), 20,
                     "gunicorn to wait for the request in flight")
            sock.sendall(b"]")
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 400"), answer    # logged in and answered: `[]` is no location
        assert service.proc.wait(40) == 0
    finally:
        service.stop()

"""The OwnTracks HTTP endpoint under abuse: only phone and terminal accounts may post, an unknown
user costs what a known one does, failed logins are refused past a limit per source, bodies must
say their length and stay within it, slow clients are cut off, and /metrics is not on the port the
phones reach."""
from __future__ import annotations

import base64
import socket
import statistics
import time
import urllib.error
import urllib.request
import uuid

import pytest

from ingest.http import FAILURES_ALLOWED, READ_TIMEOUT_S, FailedLogins
from stack.mosquitto import BrokerAccount
from telemetry.topics import AccountKind

from .ingest_helpers import ThreadWorker, worker_account


@pytest.fixture(scope="module")
def endpoint(stack, city):
    phone = BrokerAccount.generate(f"ot-{uuid.uuid4().hex[:6]}", AccountKind.OWNTRACKS)
    stack.add_broker_accounts([phone])
    with ThreadWorker(stack, index=99, share_group=f"t{uuid.uuid4().hex[:8]}") as worker:
        yield worker, phone


def _auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _raw(port: int, request: bytes, wait: float = 5.0) -> bytes:
    """Send raw bytes, return what the server answers (until it closes or `wait` passes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def _post(port: int, headers: dict, body: bytes = b"[]") -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/owntracks", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_service_accounts_cannot_post_even_with_their_right_password(stack, endpoint):
    worker, _ = endpoint
    service = worker_account(stack, 99)       # the worker's own, right password: not a phone
    assert _post(worker.http.port, {"Authorization": _auth(service.username, service.password)}) == 401
    admin = stack.account("broker-admin")
    assert _post(worker.http.port, {"Authorization": _auth(admin.username, admin.password)}) == 401


def test_a_terminal_account_may_post_like_a_phone(stack, city, endpoint):
    worker, _ = endpoint
    terminal = stack.account(city.members[5].terminal_id)
    # an empty list is valid JSON but not an OwnTracks object: refused with a reason, after the login
    assert _post(worker.http.port, {"Authorization": _auth(terminal.username, terminal.password)}) == 400


def test_an_unknown_user_costs_about_what_a_known_one_does(endpoint):
    worker, phone = endpoint
    known, unknown = [], []
    for i in range(30):
        for user, times in ((phone.username, known), (f"nobody-{i}", unknown)):
            began = time.perf_counter()
            worker_http = worker.http
            worker_http.accounts.check(user, "wrong password")
            times.append(time.perf_counter() - began)
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.5 < ratio < 2.0, (statistics.median(known), statistics.median(unknown))


def test_failed_logins_past_the_limit_are_refused_for_that_source():
    now = [0.0]
    logins = FailedLogins(allowed=3, window_s=60.0, clock=lambda: now[0])
    for _ in range(3):
        assert not logins.blocked("10.0.0.1")
        logins.failed("10.0.0.1")
    assert logins.blocked("10.0.0.1") and not logins.blocked("10.0.0.2")
    now[0] = 61.0
    assert not logins.blocked("10.0.0.1")


def test_a_source_that_keeps_failing_gets_429_even_with_the_right_password_then(stack, endpoint):
    worker, phone = endpoint
    worker.http.failed_logins = FailedLogins()   # this test's own count, from zero
    for _ in range(FAILURES_ALLOWED):
        assert _post(worker.http.port, {"Authorization": _auth(phone.username, "guess")}) == 401
    assert _post(worker.http.port, {"Authorization": _auth(phone.username, phone.password)}) == 429
    worker.http.failed_logins = FailedLogins()


@pytest.mark.parametrize("framing, expected", [
    (b"Content-Length: -5\r\n", b"400"),
    (b"Content-Length: abc\r\n", b"400"),
    (b"", b"411"),                                              # no length at all
    (b"Transfer-Encoding: chunked\r\n", b"411"),
    (b"Content-Length: 70000\r\n", b"413"),
])
def test_a_body_must_say_its_length_and_stay_within_the_limit(endpoint, framing, expected):
    worker, phone = endpoint
    head = (b"POST /owntracks HTTP/1.1\r\nHost: x\r\nAuthorization: " + _auth(phone.username, phone.password).encode()
            + b"\r\n" + framing + b"Connection: close\r\n\r\n")
    answer = _raw(worker.http.port, head)
    assert answer.split(b" ")[1] == expected, answer[:80]


def test_a_client_that_stops_sending_is_cut_off(endpoint):
    worker, phone = endpoint
    head = (b"POST /owntracks HTTP/1.1\r\nHost: x\r\nAuthorization: " + _auth(phone.username, phone.password).encode()
            + b"\r\nContent-Length: 100\r\n\r\n{")           # 99 bytes never come
    began = time.monotonic()
    _raw(worker.http.port, head, wait=READ_TIMEOUT_S + 10)
    assert time.monotonic() - began < READ_TIMEOUT_S + 5     # the server closed it


def test_metrics_and_health_are_not_on_the_port_the_phones_reach(endpoint):
    worker, _ = endpoint
    for path in ("/metrics", "/healthz"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{worker.http.port}{path}", timeout=5)
        assert refused.value.code == 404
        assert urllib.request.urlopen(f"http://127.0.0.1:{worker.http.metrics_port}{path}", timeout=5).status == 200

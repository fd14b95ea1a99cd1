"""The OwnTracks HTTP endpoint under abuse: only enabled phone and terminal accounts may post, an
unknown user costs what a known one does, failed logins are refused past a limit per source (behind
a trusted proxy: per forwarded address) and per username, bodies must say their length in ASCII
digits and stay within it, slow clients are cut off (each read, and the whole request), one address
holds a few connections at most, and /metrics is not on the port the phones reach."""
from __future__ import annotations

import base64
import select
import socket
import statistics
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import replace

import pytest

from ingest.http import (
    CONNECTIONS_PER_SOURCE,
    FAILURES_ALLOWED,
    READ_TIMEOUT_S,
    REQUEST_DEADLINE_S,
    FailedLogins,
    Sources,
)
from stack.mosquitto import BrokerAccount
from telemetry.topics import AccountKind

from ..support import wait_for
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
    """The HTTP status, or 0 when the server dropped the connection before answering (e.g. it
    refused it with a 429 while we were still sending the body)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/owntracks", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except urllib.error.URLError as err:
        if isinstance(err.reason, OSError):
            return 0
        raise


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


@pytest.fixture
def fresh_counts(endpoint):
    """This test's own failed-login counts, from zero, and no trusted proxy; as before afterwards."""
    http = endpoint[0].http
    http.failed_logins, http.failed_users, sources = FailedLogins(), FailedLogins(), http.sources
    yield http
    http.failed_logins, http.failed_users, http.sources = FailedLogins(), FailedLogins(), sources


def test_a_source_that_keeps_failing_gets_429_even_with_the_right_password_then(stack, endpoint, fresh_counts):
    worker, phone = endpoint
    other = f"nobody-{uuid.uuid4().hex[:6]}"
    for i in range(FAILURES_ALLOWED):   # guessing at several usernames, so that only the source is blocked
        assert _post(worker.http.port, {"Authorization": _auth(other if i % 2 else phone.username, "guess")}) == 401
    assert _post(worker.http.port, {"Authorization": _auth(phone.username, phone.password)}) == 429


def test_a_username_that_keeps_failing_is_refused_from_every_source(stack, city, endpoint, fresh_counts):
    """Behind a proxy every phone has the proxy's address; guesses spread over many forwarded
    addresses still lock the guessed account, and only it."""
    worker, phone = endpoint
    fresh_counts.sources = Sources(("127.0.0.1",))
    for i in range(FAILURES_ALLOWED):
        assert _post(worker.http.port, {"Authorization": _auth(phone.username, "guess"),
                                        "X-Forwarded-For": f"10.7.0.{i}"}) == 401
    assert _post(worker.http.port, {"Authorization": _auth(phone.username, phone.password),
                                    "X-Forwarded-For": "10.7.1.1"}) == 429
    terminal = stack.account(city.members[6].terminal_id)
    assert _post(worker.http.port, {"Authorization": _auth(terminal.username, terminal.password),
                                    "X-Forwarded-For": "10.7.1.1"}) == 400    # logged in; `[]` is no location


def test_behind_a_trusted_proxy_one_attacker_locks_out_only_its_own_forwarded_address(stack, city, endpoint,
                                                                                      fresh_counts):
    worker, _ = endpoint
    fresh_counts.sources = Sources(("127.0.0.1",))
    for i in range(FAILURES_ALLOWED):
        assert _post(worker.http.port, {"Authorization": _auth(f"guess-{i}", "x"),
                                        "X-Forwarded-For": "203.0.113.9"}) == 401
    terminal = stack.account(city.members[7].terminal_id)
    right = {"Authorization": _auth(terminal.username, terminal.password)}
    assert _post(worker.http.port, {**right, "X-Forwarded-For": "203.0.113.9"}) == 429
    assert _post(worker.http.port, {**right, "X-Forwarded-For": "198.51.100.7"}) == 400   # another phone: in
    # a client's own X-Forwarded-For entry before the proxy's is not believed
    assert _post(worker.http.port, {**right, "X-Forwarded-For": "198.51.100.7, 203.0.113.9"}) == 429


def test_without_a_trusted_proxy_x_forwarded_for_is_ignored(stack, endpoint, fresh_counts):
    worker, phone = endpoint
    for i in range(FAILURES_ALLOWED):
        assert _post(worker.http.port, {"Authorization": _auth(f"guess-{i}", "x"),
                                        "X-Forwarded-For": f"10.8.0.{i}"}) == 401
    assert _post(worker.http.port, {"Authorization": _auth(phone.username, phone.password),
                                    "X-Forwarded-For": "10.8.9.9"}) == 429   # all counted on the socket's address


def test_forwarded_addresses_are_believed_only_from_trusted_proxies():
    sources = Sources(("10.0.0.5", "10.1.0.0/16"))
    assert sources.source("10.0.0.5", ["203.0.113.9"]) == "203.0.113.9"
    assert sources.source("10.0.0.5", ["1.2.3.4, 203.0.113.9, 10.1.2.3"]) == "203.0.113.9"   # via two proxies
    assert sources.source("192.0.2.1", ["203.0.113.9"]) == "192.0.2.1"      # not a proxy of ours
    assert sources.source("10.0.0.5", None) == "10.0.0.5"


def test_a_disabled_account_cannot_post_even_with_its_right_password(stack, endpoint):
    worker, _ = endpoint
    revoked = replace(BrokerAccount.generate(f"ot-{uuid.uuid4().hex[:6]}", AccountKind.OWNTRACKS), disabled=True)
    stack.add_broker_accounts([revoked])
    path = worker.http.accounts.path
    wait_for(lambda: revoked.username.encode() in path.read_bytes(), 10, "the broker to save the account")
    assert _post(worker.http.port, {"Authorization": _auth(revoked.username, revoked.password)}) == 401
    stack.set_account_disabled(revoked.username, False)
    wait_for(lambda: _post(worker.http.port, {"Authorization": _auth(revoked.username, revoked.password)}) == 400,
             10, "the restored account to log in")


@pytest.mark.parametrize("framing, expected", [
    (b"Content-Length: -5\r\n", b"400"),
    (b"Content-Length: abc\r\n", b"400"),
    (b"", b"411"),                                              # no length at all
    (b"Transfer-Encoding: chunked\r\n", b"411"),
    (b"Content-Length: 70000\r\n", b"413"),
    (b"Content-Length: \xb2\r\n", b"400"),                     # superscript two: str.isdigit() says yes
    (b"Content-Length: " + b"9" * 5000 + b"\r\n", b"413"),       # more digits than int() takes
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


def _trickle(port: int, request: bytes, every_s: float, give_up_s: float) -> float:
    """Send `request` one byte every `every_s`: the seconds until the server closed the connection."""
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
                readable, _, _ = select.select([sock], [], [], every_s)
                if readable and sock.recv(1024) == b"":
                    break
            except OSError:
                break
            if time.monotonic() - began > give_up_s:
                break
    return time.monotonic() - began


def test_a_client_trickling_its_headers_is_cut_off_at_the_request_deadline(endpoint):
    """Each byte comes well within the read timeout; the whole request never does."""
    worker, _ = endpoint
    server = worker.http.servers[0]
    server.deadline_s = 3.0
    try:
        lasted = _trickle(worker.http.port, b"POST /owntracks HTTP/1.1\r\nX-Slow: " + b"y" * 100, 0.5, 12.0)
    finally:
        server.deadline_s = REQUEST_DEADLINE_S
    assert 2.5 < lasted < 6


def test_one_address_holds_at_most_a_few_connections(stack, city, endpoint):
    worker, _ = endpoint
    held = [socket.create_connection(("127.0.0.1", worker.http.port), timeout=5)
            for _ in range(CONNECTIONS_PER_SOURCE)]
    try:
        time.sleep(0.3)
        answer = _raw(worker.http.port, b"")            # one more from the same address
        assert answer.split(b" ")[1] == b"429", answer[:80]
    finally:
        for sock in held:
            sock.close()
    terminal = stack.account(city.members[8].terminal_id)
    wait_for(lambda: _post(worker.http.port, {"Authorization": _auth(terminal.username, terminal.password)}) == 400,
             5, "a connection again once they are gone")


def test_metrics_and_health_are_not_on_the_port_the_phones_reach(endpoint):
    worker, _ = endpoint
    for path in ("/metrics", "/healthz"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{worker.http.port}{path}", timeout=5)
        assert refused.value.code == 404
        assert urllib.request.urlopen(f"http://127.0.0.1:{worker.http.metrics_port}{path}", timeout=5).status == 200

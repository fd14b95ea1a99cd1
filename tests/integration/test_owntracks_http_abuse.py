"""The OwnTracks HTTP endpoint under abuse: only enabled phone and terminal accounts may post, an
unknown user costs what a known one does, guessing slows the guesser down (per username and source,
per source — behind a trusted proxy: per forwarded address — and per username, which the phone's own
sources pass) and never locks the phone out, an attempt counts before its password is checked, bodies
must say their length in ASCII
digits and stay within it, slow clients are cut off (each read, and the whole request), one address
holds a few connections at most, and /metrics is not on the port the phones reach. All against the
real service, `python -m ingest.http` (gunicorn's ASGI worker with ingest.http.protocol's guard);
a test whose counts must start from zero, or that needs a trusted proxy, starts a service of its own."""
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
from pathlib import Path

import pytest

from core.throttle import (
    FAILURES_PER_PAIR,
    FAILURES_PER_SOURCE,
    FAILURES_PER_USERNAME,
    LoginThrottle,
    Sources,
    ThrottlePolicy,
)
from ingest.http.accounts import BrokerAccounts
from ingest.http.app import Limits
from registry.dynsec import BrokerAccount
from telemetry.topics import AccountKind

from ..support import wait_for
from .ingest_helpers import HttpService, worker_account

LIMITS = Limits()      # the settings' defaults, which the module's service runs with
CONNECTIONS_PER_SOURCE, READ_TIMEOUT_S, REQUEST_DEADLINE_S = (LIMITS.connections_per_source, LIMITS.read_timeout_s,
                                                              LIMITS.request_deadline_s)
PROXY = '["127.0.0.1"]'   # the test's own address as a trusted reverse proxy


@pytest.fixture(scope="module")
def endpoint(stack, city, tmp_path_factory):
    phone = BrokerAccount.generate(f"ot-{uuid.uuid4().hex[:6]}", AccountKind.OWNTRACKS)
    stack.add_broker_accounts([phone])
    with HttpService(stack, tmp_path_factory.mktemp("abuse") / "ingest-http.log") as service:
        yield service, phone


def _credentials_file(stack) -> Path:
    return Path(stack.public_env()["GCC_BROKER_CREDENTIALS_FILE"])


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
    server, _ = endpoint
    service = worker_account(stack, 99)       # the worker's own, right password: not a phone
    assert _post(server.port, {"Authorization": _auth(service.username, service.password)}) == 401
    admin = stack.account("broker-admin")
    assert _post(server.port, {"Authorization": _auth(admin.username, admin.password)}) == 401


def test_a_terminal_account_may_post_like_a_phone(stack, city, endpoint):
    server, _ = endpoint
    terminal = stack.account(city.members[5].terminal_id)
    # an empty list is valid JSON but not an OwnTracks object: refused with a reason, after the login
    assert _post(server.port, {"Authorization": _auth(terminal.username, terminal.password)}) == 400


def test_an_unknown_user_costs_about_what_a_known_one_does(stack, endpoint):
    _, phone = endpoint
    accounts = BrokerAccounts(_credentials_file(stack))    # as the service checks them
    known, unknown = [], []
    for i in range(30):
        for user, times in ((phone.username, known), (f"nobody-{i}", unknown)):
            began = time.perf_counter()
            accounts.check(user, "wrong password")
            times.append(time.perf_counter() - began)
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.5 < ratio < 2.0, (statistics.median(known), statistics.median(unknown))


def test_a_pair_waits_twice_as_long_after_each_guess_past_its_free_ones_and_only_that_pair():
    now = [0.0]
    throttle = LoginThrottle(ThrottlePolicy(per_pair=2, pair_delay_s=10.0, pair_delay_max_s=35.0),
                             clock=lambda: now[0])
    assert [throttle.reserve("ot-a", "10.0.0.1") for _ in range(2)] == [None, None]
    waits = []
    for _ in range(4):
        began = now[0]
        while throttle.reserve("ot-a", "10.0.0.1") == "pair":
            now[0] += 1.0
        waits.append(now[0] - began)
    assert waits == [10.0, 20.0, 35.0, 35.0]
    assert throttle.reserve("ot-a", "10.0.0.2") is None and throttle.reserve("ot-b", "10.0.0.1") is None
    throttle.succeeded("ot-a", "10.0.0.1")                     # the right password: the pair starts over
    assert throttle.reserve("ot-a", "10.0.0.1") is None


def test_a_source_past_its_budget_keeps_nothing_of_the_usernames_it_goes_on_sending():
    """Memory: a refused source adds no username's count (it used to add one per new username)."""
    throttle = LoginThrottle(ThrottlePolicy(per_source=3, per_username=100, window_s=60.0), clock=lambda: 0.0)
    assert [throttle.reserve(f"ot-{i}", "10.0.0.1") for i in range(3)] == [None] * 3
    assert {throttle.reserve(f"guess-{i}", "10.0.0.1") for i in range(1000)} == {"source"}
    assert sorted(throttle._users) == ["ot-0", "ot-1", "ot-2"]


def test_a_source_and_a_username_have_budgets_a_window_and_the_usernames_own_sources_pass():
    now = [0.0]
    throttle = LoginThrottle(ThrottlePolicy(per_source=3, per_username=4, window_s=60.0), clock=lambda: now[0])
    assert [throttle.reserve(f"ot-{i}", "10.0.0.1") for i in range(4)] == [None, None, None, "source"]
    throttle.reserve("ot-owner", "10.0.0.9")
    throttle.succeeded("ot-owner", "10.0.0.9")                  # the phone's own source
    assert [throttle.reserve("ot-owner", f"10.1.0.{i}") for i in range(5)] == [None] * 4 + ["username"]
    assert throttle.reserve("ot-owner", "10.0.0.9") is None
    now[0] = 61.0
    assert throttle.reserve("ot-9", "10.0.0.1") is None and throttle.reserve("ot-owner", "10.2.0.1") is None


@pytest.fixture
def fresh_counts(stack, endpoint, tmp_path):
    """A service of this test's own: its login counts from zero, and no trusted proxy."""
    with HttpService(stack, tmp_path / "ingest-http.log") as service:
        yield service


@pytest.fixture
def behind_proxy(stack, endpoint, tmp_path):
    """A service of this test's own, its login counts from zero, with the test as its trusted proxy."""
    with HttpService(stack, tmp_path / "ingest-http.log", ingest_http_trusted_proxies=PROXY) as service:
        yield service


def test_a_source_that_keeps_failing_gets_429_even_with_the_right_password_then(stack, endpoint, fresh_counts):
    _, phone = endpoint
    for i in range(FAILURES_PER_SOURCE):   # guessing at many usernames, so that only the source is refused
        assert _post(fresh_counts.port, {"Authorization": _auth(f"nobody-{i}", "guess")}) == 401
    assert _post(fresh_counts.port, {"Authorization": _auth(phone.username, phone.password)}) == 429


def test_guesses_spread_over_many_sources_stop_at_the_usernames_budget_but_not_at_its_own_source(stack, endpoint,
                                                                                                 behind_proxy):
    """Behind a proxy: guesses at one phone from many forwarded addresses use up its budget; a
    new address is refused then, the address the phone posts from is not."""
    _, phone = endpoint
    right = {"Authorization": _auth(phone.username, phone.password)}
    assert _post(behind_proxy.port, {**right, "X-Forwarded-For": "10.7.9.9"}) == 400    # logged in; `[]` is no location
    for i in range(FAILURES_PER_USERNAME):
        assert _post(behind_proxy.port, {"Authorization": _auth(phone.username, "guess"),
                                        "X-Forwarded-For": f"10.7.{i // 200}.{i % 200}"}) == 401
    assert _post(behind_proxy.port, {**right, "X-Forwarded-For": "10.7.200.1"}) == 429
    assert _post(behind_proxy.port, {**right, "X-Forwarded-For": "10.7.9.9"}) == 400


def test_behind_a_trusted_proxy_one_attacker_locks_out_only_its_own_forwarded_address(stack, city, endpoint,
                                                                                      behind_proxy):
    for i in range(FAILURES_PER_SOURCE):
        assert _post(behind_proxy.port, {"Authorization": _auth(f"guess-{i}", "x"),
                                        "X-Forwarded-For": "203.0.113.9"}) == 401
    terminal = stack.account(city.members[7].terminal_id)
    right = {"Authorization": _auth(terminal.username, terminal.password)}
    assert _post(behind_proxy.port, {**right, "X-Forwarded-For": "203.0.113.9"}) == 429
    assert _post(behind_proxy.port, {**right, "X-Forwarded-For": "198.51.100.7"}) == 400   # another phone: in
    # a client's own X-Forwarded-For entry before the proxy's is not believed
    assert _post(behind_proxy.port, {**right, "X-Forwarded-For": "198.51.100.7, 203.0.113.9"}) == 429


def test_without_a_trusted_proxy_x_forwarded_for_is_ignored(stack, endpoint, fresh_counts):
    _, phone = endpoint
    for i in range(FAILURES_PER_SOURCE):
        assert _post(fresh_counts.port, {"Authorization": _auth(f"guess-{i}", "x"),
                                        "X-Forwarded-For": f"10.8.0.{i}"}) == 401
    assert _post(fresh_counts.port, {"Authorization": _auth(phone.username, phone.password),
                                    "X-Forwarded-For": "10.8.9.9"}) == 429   # all counted on the socket's address


def test_forwarded_addresses_are_believed_only_from_trusted_proxies():
    sources = Sources(("10.0.0.5", "10.1.0.0/16"))
    assert sources.source("10.0.0.5", ["203.0.113.9"]) == "203.0.113.9"
    assert sources.source("10.0.0.5", ["1.2.3.4, 203.0.113.9, 10.1.2.3"]) == "203.0.113.9"   # via two proxies
    assert sources.source("192.0.2.1", ["203.0.113.9"]) == "192.0.2.1"      # not a proxy of ours
    assert sources.source("10.0.0.5", None) == "10.0.0.5"


def test_a_disabled_account_cannot_post_even_with_its_right_password(stack, endpoint):
    server, _ = endpoint
    revoked = replace(BrokerAccount.generate(f"ot-{uuid.uuid4().hex[:6]}", AccountKind.OWNTRACKS), disabled=True)
    stack.add_broker_accounts([revoked])
    path = _credentials_file(stack)
    wait_for(lambda: revoked.username.encode() in path.read_bytes(), 10, "the broker to save the account")
    assert _post(server.port, {"Authorization": _auth(revoked.username, revoked.password)}) == 401
    stack.set_account_disabled(revoked.username, False)
    wait_for(lambda: _post(server.port, {"Authorization": _auth(revoked.username, revoked.password)}) == 400,
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
    server, phone = endpoint
    head = (b"POST /owntracks HTTP/1.1\r\nHost: x\r\nAuthorization: " + _auth(phone.username, phone.password).encode()
            + b"\r\n" + framing + b"Connection: close\r\n\r\n")
    answer = _raw(server.port, head)
    assert answer.split(b" ")[1] == expected, answer[:80]


def test_a_client_that_stops_sending_is_cut_off(endpoint):
    server, phone = endpoint
    head = (b"POST /owntracks HTTP/1.1\r\nHost: x\r\nAuthorization: " + _auth(phone.username, phone.password).encode()
            + b"\r\nContent-Length: 100\r\n\r\n{")           # 99 bytes never come
    began = time.monotonic()
    _raw(server.port, head, wait=READ_TIMEOUT_S + 10)
    assert time.monotonic() - began < READ_TIMEOUT_S + 5     # the server closed it


def _trickle(port: int, request: bytes, every_s: float, give_up_s: float, head: bytes = b"") -> float:
    """Send `head` at once, then `request` one byte every `every_s`: the seconds until the server
    closed the connection."""
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head)
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


def test_a_client_trickling_its_headers_is_cut_off_at_the_request_deadline(stack, endpoint, tmp_path):
    """Each byte comes well within the read timeout; the whole request never does (a service whose
    deadline is 3 s: ingest.http.protocol arms it at the accept)."""
    with HttpService(stack, tmp_path / "ingest-http.log", ingest_http_request_deadline_s=3) as server:
        lasted = _trickle(server.port, b"POST /owntracks HTTP/1.1\r\nX-Slow: " + b"y" * 100, 0.5, 12.0)
        assert 2.5 < lasted < 6
        assert 'reason="request_deadline"' in server.metrics()


def test_a_client_trickling_its_body_is_cut_off_at_the_request_deadline_too(stack, endpoint, tmp_path):
    _, phone = endpoint
    head = (b"POST /owntracks HTTP/1.1\r\nHost: x\r\nAuthorization: " + _auth(phone.username, phone.password).encode()
            + b"\r\nContent-Length: 60\r\n\r\n")
    with HttpService(stack, tmp_path / "ingest-http.log", ingest_http_request_deadline_s=3) as server:
        lasted = _trickle(server.port, b"[" + b" " * 58 + b"]", 0.5, 12.0, head=head)
    assert 2.5 < lasted < 6


def _answer_on(sock: socket.socket) -> bytes:
    """One whole answer (head and its Content-Length of body) read from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or b"!closed"
        assert not data.endswith(b"!closed"), data
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_a_kept_alive_connection_answers_its_next_request_and_times_that_one_too(stack, endpoint, tmp_path):
    """Keep-alive (a phone's fixes on one connection) gives no slow client more time: the next
    request on the connection has the deadline from its own first byte."""
    _, phone = endpoint
    request = (b"POST /owntracks HTTP/1.1\r\nHost: x\r\nAuthorization: "
               + _auth(phone.username, phone.password).encode() + b"\r\nContent-Length: 2\r\n\r\n[]")
    with HttpService(stack, tmp_path / "ingest-http.log", ingest_http_request_deadline_s=3) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for _ in range(3):                    # three requests, one connection, each answered
            sock.sendall(request)
            assert _answer_on(sock).startswith(b"HTTP/1.1 400")
        began = time.monotonic()
        for byte in request[:-1]:             # the fourth one trickles
            try:
                sock.sendall(bytes([byte]))
                readable, _, _ = select.select([sock], [], [], 0.5)
                if readable and sock.recv(1024) == b"":
                    break
            except OSError:
                break
        lasted = time.monotonic() - began
        assert 2.5 < lasted < 6
        assert 'reason="request_deadline"' in server.metrics()


def test_an_idle_kept_alive_connection_gives_way_to_a_new_one_from_its_address(endpoint):
    """A browser keeps several connections open between its requests (two phones' browsers behind
    one address, more): at the cap, the address's oldest idle one is closed for the newcomer,
    which is answered; busy connections are never closed for it (the next test)."""
    server, phone = endpoint
    request = (b"POST /owntracks HTTP/1.1\r\nHost: x\r\nAuthorization: "
               + _auth(phone.username, phone.password).encode() + b"\r\nContent-Length: 2\r\n\r\n[]")
    kept = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(CONNECTIONS_PER_SOURCE)]
    try:
        for sock in kept:                       # each answered once, and now idle, kept alive
            sock.sendall(request)
            assert _answer_on(sock).startswith(b"HTTP/1.1 400")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as newcomer:
            newcomer.sendall(request)
            assert _answer_on(newcomer).startswith(b"HTTP/1.1 400")     # not 429
        assert kept[0].recv(1024) == b""        # the oldest idle one was closed to make room
    finally:
        for sock in kept:
            sock.close()


def test_one_address_holds_at_most_a_few_connections(stack, city, endpoint):
    server, _ = endpoint
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=5)
            for _ in range(CONNECTIONS_PER_SOURCE)]
    try:
        answer = _raw(server.port, b"")            # one more from the same address, accepted after them
        assert answer.split(b" ")[1] == b"429", answer[:80]
    finally:
        for sock in held:
            sock.close()
    terminal = stack.account(city.members[8].terminal_id)
    wait_for(lambda: _post(server.port, {"Authorization": _auth(terminal.username, terminal.password)}) == 400,
             5, "a connection again once they are gone")


def test_metrics_and_health_are_not_on_the_port_the_phones_reach(endpoint):
    server, _ = endpoint
    for path in ("/metrics", "/healthz"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5)
        assert refused.value.code == 404
        assert urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}{path}", timeout=5).status == 200


def test_guesses_at_a_phone_from_one_address_do_not_lock_it_out_from_another(stack, endpoint, behind_proxy):
    """Behind a proxy: eleven wrong passwords for the phone from one forwarded address; the phone,
    from its own address, still gets in (before: 429 from every address for five minutes)."""
    _, phone = endpoint
    answers = [_post(behind_proxy.port, {"Authorization": _auth(phone.username, f"guess-{i}"),
                                        "X-Forwarded-For": "203.0.113.40"}) for i in range(11)]
    assert answers == [401] * FAILURES_PER_PAIR + [429] * (11 - FAILURES_PER_PAIR)
    right = {"Authorization": _auth(phone.username, phone.password)}
    assert _post(behind_proxy.port, {**right, "X-Forwarded-For": "198.51.100.40"}) == 400    # logged in
    assert _post(behind_proxy.port, {**right, "X-Forwarded-For": "203.0.113.40"}) == 429     # the guesser waits


def _slow_accounts(path, username: str, password: str, iterations: int = 400_000):
    """A broker accounts file (the dynamic security plugin's format) whose one account takes a
    while to check: so that guesses sent at once are all in the check together."""
    import hashlib
    import json
    import os

    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    path.write_text(json.dumps({"clients": [{
        "username": username, "textname": AccountKind.OWNTRACKS.value, "iterations": iterations,
        "password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode()}]}))
    return path


def test_guesses_sent_at_once_are_counted_before_any_is_checked(stack, endpoint, tmp_path):
    """Twelve guesses for one username at once: no more are checked (401) than the budget; the
    rest are refused unchecked (429). Before, all twelve read the count, then all were checked.
    (A service behind the test as its trusted proxy, whose connections are not capped per address,
    with an accounts file of one account that is slow to check.)"""
    from concurrent.futures import ThreadPoolExecutor

    slow = _slow_accounts(tmp_path / "dynamic-security.json", "ot-slow", "right one")
    with HttpService(stack, tmp_path / "ingest-http.log", ingest_http_trusted_proxies=PROXY,
                     broker_credentials_file=slow) as server, ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda i: _post(server.port, {"Authorization": _auth("ot-slow", f"guess-{i}"),
                                                              "X-Forwarded-For": "203.0.113.41"}), range(12)))
    assert set(answers) <= {401, 429}, answers
    assert answers.count(401) <= FAILURES_PER_PAIR, answers


def test_guesses_at_an_osmand_token_slow_down_that_address_only(stack, endpoint, behind_proxy):
    """/osmand/<token>: the same throttle as /owntracks, on the device id the request claims."""
    device = BrokerAccount.generate(f"osm-{uuid.uuid4().hex[:6]}", AccountKind.OSMAND)
    stack.add_broker_accounts([device])

    def get(token: str, source: str) -> int:
        url = (f"http://127.0.0.1:{behind_proxy.port}/osmand/{token}?id={device.username}"
               "&lat=26.08&lon=119.30&timestamp=1764547200")
        request = urllib.request.Request(url, headers={"X-Forwarded-For": source})
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code

    wait_for(lambda: get(device.password, "198.51.100.50") not in (401, 429), 10, "the broker to save the device")
    answers = [get(f"guess-{i}", "203.0.113.50") for i in range(FAILURES_PER_PAIR + 2)]
    assert answers == [401] * FAILURES_PER_PAIR + [429] * 2
    assert get(device.password, "198.51.100.50") not in (401, 429)           # from its own address: in
    assert get(device.password, "203.0.113.50") == 429                       # the guesser waits


def test_guesses_from_one_ipv6_64_are_one_source(stack, endpoint, behind_proxy):
    """Every address of a /64 is the same guesser (a line or host has a whole /64): fresh addresses
    of it get no fresh budget; the phone posting from another network is not refused."""
    _, phone = endpoint
    for i in range(FAILURES_PER_SOURCE):
        forwarded = {"X-Forwarded-For": f"2001:db8:7:9::{i + 1:x}"}
        assert _post(behind_proxy.port, {"Authorization": _auth(f"nobody-{i}", "guess"), **forwarded}) == 401
    right = {"Authorization": _auth(phone.username, phone.password)}
    assert _post(behind_proxy.port, {**right, "X-Forwarded-For": "2001:db8:7:9::ffff"}) == 429
    assert _post(behind_proxy.port, {**right, "X-Forwarded-For": "2001:db8:7:a::1"}) == 400   # in; [] is no location

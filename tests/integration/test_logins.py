"""Logins against the real dashboard process (gunicorn), PostgreSQL and the browser: the gate,
sessions and their cookies, CSRF, brute force, scopes on pages and sockets, wall tokens."""
from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse
import uuid
from datetime import datetime, timezone

import psycopg2
import pytest

from dashboard import declarations
from dashboard.accounts import Accounts

from ..support import wait_for
from .ingest_helpers import count
from .screens import TEST_PASSWORD, ensure_logins, session_cookie, sign_in, wait_wall_connection
from .test_dashboard_server import WireScreen

pytestmark = pytest.mark.slow


def _get(board, path: str, cookie: str | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", board.port, timeout=10)
    conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
    response = conn.getresponse()
    response.body = response.read()
    conn.close()
    return response


def _post(board, path: str, fields: dict, cookie: str | None = None, origin: bool = True):
    conn = http.client.HTTPConnection("127.0.0.1", board.port, timeout=10)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if origin:
        headers["Origin"] = board.url
    if cookie:
        headers["Cookie"] = cookie
    conn.request("POST", path, body=urllib.parse.urlencode(fields), headers=headers)
    response = conn.getresponse()
    response.body = response.read()
    conn.close()
    return response


def _form(board) -> tuple[str, str]:
    """The login form's CSRF token and the cookie it came with."""
    response = _get(board, "/login")
    token = re.search(r"name='csrf_token' value='([^']+)'", response.body.decode()).group(1)
    return token, response.getheader("Set-Cookie").split(";", 1)[0]


def _login(board, username: str, password: str):
    token, cookie = _form(board)
    return _post(board, "/login", {"csrf_token": token, "username": username, "password": password,
                                   "next": "/wall"}, cookie)


@pytest.fixture(scope="module")
def street_logins(stack, city):
    """A dispatcher of the first street, and the code of another street."""
    street, other = city.streets[0], city.streets[1]
    ensure_logins(stack.settings().pg_dsn, {"t-street": ("dispatcher", street.code)})
    return street, other


def test_an_anonymous_visit_goes_to_the_login_page_and_nothing_else_is_served(dashboard):
    response = _get(dashboard, "/wall?scope=350102")
    assert response.status == 302
    assert response.getheader("Location").endswith("/login?next=%2Fwall%3Fscope%3D350102")
    for path in ("/_dash-layout", "/_dash-dependencies"):
        assert _get(dashboard, path).status == 401
    assert _get(dashboard, "/login").status == 200 and _get(dashboard, "/healthz").status == 200


def test_a_login_starts_a_new_session_in_a_strict_httponly_cookie(dashboard):
    token, before = _form(dashboard)
    response = _post(dashboard, "/login", {"csrf_token": token, "username": "t-admin", "password": TEST_PASSWORD,
                                           "next": "/dispatch"}, before)
    assert response.status == 302 and response.getheader("Location").endswith("/dispatch")
    cookie_header = response.getheader("Set-Cookie")
    assert "HttpOnly" in cookie_header and "SameSite=Strict" in cookie_header and "Path=/" in cookie_header
    after = cookie_header.split(";", 1)[0]
    assert after != before                                       # no fixation: a new session
    assert _get(dashboard, "/wall", before).status == 302        # the cookie from before the login is nobody
    assert _get(dashboard, "/_dash-layout", after).status == 200


def test_a_post_without_the_csrf_token_or_from_another_origin_is_refused(dashboard, db):
    _, cookie = _form(dashboard)
    missing = _post(dashboard, "/login", {"username": "t-admin", "password": TEST_PASSWORD}, cookie)
    assert missing.status == 400
    assert count(db, "select count(*) from audit_log where action = 'auth.csrf' and outcome = 'refused'") >= 1
    token, cookie = _form(dashboard)
    foreign = _post(dashboard, "/login", {"csrf_token": token, "username": "t-admin", "password": TEST_PASSWORD},
                    cookie, origin=False)
    assert foreign.status == 403
    signed_in = session_cookie(dashboard.url)
    callback = _post(dashboard, "/_dash-update-component", {}, signed_in, origin=False)
    assert callback.status == 403                                 # a callback from another site


def test_brute_force_on_a_username_slows_that_address_down_and_says_no_more_than_a_wrong_password(dashboard, stack,
                                                                                                    db):
    victim = f"t-victim-{uuid.uuid4().hex[:6]}"
    ensure_logins(stack.settings().pg_dsn, {victim: ("leader", "")})
    answers = [_login(dashboard, victim, f"guess-{i}") for i in range(5)]
    assert {a.status for a in answers} == {401}
    slowed = _login(dashboard, victim, TEST_PASSWORD)            # the right password, too soon from this address
    assert slowed.status == 401
    unknown = _login(dashboard, f"nobody-{uuid.uuid4().hex[:6]}", "whatever-it-is")
    assert _message(slowed) == _message(answers[0]) == _message(unknown)   # one answer: nothing enumerated
    assert count(db, "select count(*) from audit_log where action = 'auth.login' and outcome = 'refused' "
                     "and actor = %s", victim) == 6
    assert count(db, "select count(*) from audit_log where action = 'auth.login' and outcome = 'refused' "
                     "and actor = %s and reason = 'slowed down (pair)'", victim) == 1
    assert count(db, "select count(*) from login_throttle where key = %s and locked_until > now()",
                 f"pair:127.0.0.1 {victim}") == 1                  # only this address waits for this username
    assert count(db, "select count(*) from login_throttle where key = %s and locked_until > now()",
                 f"user:{victim}") == 0


def _message(response) -> str:
    return re.search(r"role='alert'>([^<]+)<", response.body.decode()).group(1)


def test_an_unknown_username_costs_the_same_as_a_wrong_password(dashboard, stack):
    known = f"t-timed-{uuid.uuid4().hex[:6]}"
    ensure_logins(stack.settings().pg_dsn, {known: ("leader", "")})

    def timed(username: str) -> float:
        token, cookie = _form(dashboard)
        began = time.perf_counter()
        _post(dashboard, "/login", {"csrf_token": token, "username": username, "password": "not-it"}, cookie)
        return time.perf_counter() - began

    # alternate, and compare medians (the lock-out allows 5 failures per user: 4 tries each)
    known_s = sorted(timed(known) for _ in range(4))
    unknown_s = sorted(timed(f"ghost-{uuid.uuid4().hex[:6]}") for _ in range(4))
    median_known, median_unknown = known_s[2], unknown_s[2]
    assert abs(median_known - median_unknown) < 0.5 * max(median_known, median_unknown), (known_s, unknown_s)


def test_logout_ends_the_session_for_every_request(dashboard):
    cookie = session_cookie(dashboard.url, "t-leader")
    assert _get(dashboard, "/_dash-layout", cookie).status == 200
    form = _get(dashboard, "/login", cookie)
    token = re.search(r"name='csrf_token' value='([^']+)'", form.body.decode()).group(1)
    cookie = (form.getheader("Set-Cookie") or cookie).split(";", 1)[0]     # the session now holds the token
    assert _post(dashboard, "/logout", {"csrf_token": token}, cookie).status == 302
    assert _get(dashboard, "/_dash-layout", cookie).status == 401


def test_a_socket_without_a_session_is_refused_and_one_outside_the_subtree_too(dashboard, street_logins):
    street, other = street_logins
    anonymous = WireScreen(dashboard.port)
    anonymous.join("wall", "")
    assert anonymous.message("44/live", 10) is not None            # Socket.IO's CONNECT_ERROR
    anonymous.close()
    cookie = session_cookie(dashboard.url, "t-street")
    outside = WireScreen(dashboard.port, cookie=cookie)
    outside.join("dispatch", other.code)
    assert outside.message("44/live", 10) is not None
    outside.close()
    inside = WireScreen(dashboard.port, cookie=cookie)
    inside.join("dispatch", street.code)
    assert inside.event("snapshot")["scope"] == street.code
    inside.close()


def test_a_wall_viewers_frames_carry_no_terminal_id_text_or_photo(dashboard, city):
    cookie = session_cookie(dashboard.url, "t-viewer")
    screen = WireScreen(dashboard.port, cookie=cookie)
    screen.join("wall", "")
    snapshot = screen.event("snapshot")
    text = json.dumps(snapshot)
    assert not any(m.terminal_id in text for m in city.members[:50])
    refused = WireScreen(dashboard.port, cookie=cookie)
    refused.join("dispatch", "")                                      # not a viewer's page
    assert refused.message("44/live", 10) is not None
    screen.close()
    refused.close()


def test_a_street_dispatcher_opening_another_streets_url_gets_403_and_an_audit_row(dashboard, page, street_logins, db):
    street, other = street_logins
    sign_in(page, dashboard.url, "t-street")
    page.goto(f"{dashboard.url}/dispatch?scope={other.code}")
    page.locator("#shell-refusal").wait_for(timeout=15000)
    assert "403" in page.inner_text("#shell-refusal")
    assert page.locator("#dispatch").count() == 0
    wait_for(lambda: count(db, "select count(*) from audit_log where actor = 't-street' and action = 'page.open' "
                               "and outcome = 'refused' and target = %s", f"page:/dispatch?scope={other.code}") == 1,
             10, "the refusal's audit row")
    page.goto(f"{dashboard.url}/dispatch?scope={street.code}")
    page.locator("#dispatch").wait_for(timeout=15000)
    options = page.locator("#shell-org").inner_text()
    assert street.name in options and page.inner_text("#shell-who-name") == "t-street"


def test_a_wall_token_opens_the_kiosk_without_a_keyboard_and_revoking_it_closes_the_screen(dashboard, page, stack):
    accounts = Accounts(stack.settings().pg_dsn, pool_size=1)
    try:
        token_id, token = accounts.create_wall_token(f"lobby {uuid.uuid4().hex[:4]}", "", "tests")
        page.goto(f"{dashboard.url}/wall?kiosk=1&token={token}")
        page.wait_for_function("() => { const st = window.gcc && window.gcc.live && window.gcc.live.state('wall');"
                               " return st && st.scope !== null; }", timeout=20000)
        assert "token" not in page.url and "kiosk=1" in page.url          # the token left the address bar
        assert page.locator("#shell-header").count() == 0
        wait_wall_connection(page, timeout_ms=10000)
        accounts.revoke_wall_token(token_id, "tests", datetime.now(timezone.utc))
        wait_wall_connection(page, live=False, timeout_ms=10000)            # closed from the server
        cookie = _cookie_of(page)
        wait_for(lambda: _get(dashboard, "/_dash-layout", cookie).status == 401, 5, "the revoked session to end")
    finally:
        accounts.close()


def _cookie_of(page) -> str:
    cookie = next(c for c in page.context.cookies() if c["name"] == "gcc_session")
    return f"gcc_session={cookie['value']}"


def test_every_route_and_callback_of_the_app_declares_who_may_use_it(stack, dashboard):   # (its city loaded)
    from dash._callback import GLOBAL_CALLBACK_MAP

    from dashboard.app import create_app

    app, _, hub = create_app(stack.app_settings("dashboard"))
    rules = {r.rule for r in app.server.url_map.iter_rules()}
    assert rules - set(declarations.routes(app.server)) == set(), "routes nobody said who may use"
    assert set(declarations.routes(app.server)) - rules == set(), "declarations of routes that do not exist"
    keys = {**GLOBAL_CALLBACK_MAP, **app.callback_map}
    assert keys, "no callbacks found: the walk itself is broken"
    assert set(keys) - set(declarations.callbacks()) == set(), "callbacks nobody said who may use"
    # a callback that changes data is open to no role all its actions refuse (the commands check each again)
    changing = {key: entry for key, entry in declarations.callbacks().items() if entry.changes}
    wider = {key: sorted(r.value for r in entry.roles - frozenset().union(*(a.roles for a in entry.changes)))
             for key, entry in changing.items()}
    assert {key: roles for key, roles in wider.items() if roles} == {}
    assert {a.key for entry in changing.values() for a in entry.changes} >= {"alarm.acknowledge", "user.add",
                                                                             "wall_token.revoke"}


def test_the_audit_trail_cannot_be_changed_by_the_dashboard(stack, settings):
    env = stack.app_env("dashboard")
    conn = psycopg2.connect(host="127.0.0.1", port=env["GCC_PG_PORT"], dbname=env["GCC_PG_DATABASE"],
                            user=env["GCC_PG_USER"], password=env["GCC_PG_PASSWORD"])
    try:
        with pytest.raises(psycopg2.Error), conn.cursor() as cur:
            cur.execute("update audit_log set reason = 'nothing happened'")
    finally:
        conn.close()


def test_an_open_screen_keeps_its_session_alive_a_closed_one_ends_when_idle_and_both_at_the_absolute_end(stack):
    from datetime import timedelta

    from dashboard.accounts import Policy

    ensure_logins(stack.settings().pg_dsn, {"t-watcher": ("dispatcher", "")})
    accounts = Accounts(stack.settings().pg_dsn, Policy(idle=timedelta(minutes=30), absolute=timedelta(hours=2)),
                        pool_size=1)
    try:
        start = datetime.now(timezone.utc)
        watching = accounts.login("t-watcher", TEST_PASSWORD, "10.0.0.1", "test", start)
        walked_away = accounts.login("t-watcher", TEST_PASSWORD, "10.0.0.1", "test", start)
        open_hash = watching.session.id_hash
        for minutes in (20, 40, 60):            # the hub's keep-alive of the open screens, now and then
            assert accounts.keep_alive([open_hash], start + timedelta(minutes=minutes)) == {open_hash}
        assert accounts.keep_alive([walked_away.session.id_hash], start + timedelta(minutes=61)) == set()
        assert accounts.session(watching.session_id, start + timedelta(minutes=80)) is not None
        assert accounts.session(walked_away.session_id, start + timedelta(minutes=80)) is None
        # kept alive or not, a session ends at its absolute end: the person signs in again
        for minutes in (85, 105, 119):
            assert accounts.keep_alive([open_hash], start + timedelta(minutes=minutes)) == {open_hash}
        assert accounts.keep_alive([open_hash], start + timedelta(minutes=121)) == set()
        assert accounts.session(watching.session_id, start + timedelta(minutes=122)) is None
    finally:
        accounts.close()

"""Each role in the browser (Chromium): the pages it sees, the org units it may choose, the pages
and scopes it is refused; the audit trail (page and CSV, scoped) and the admin page (users and
wall tokens, each change audited, secrets shown once)."""
from __future__ import annotations

import csv
import io
import re
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone

import psycopg2
import pytest

from dashboard.accounts import Accounts
from dashboard.users import main as users_cli

from ..support import wait_for
from .ingest_helpers import owner_rows
from .screens import TEST_PASSWORD, ensure_logins, post_callback, session_cookie, sign_in, wait_wall_connection

pytestmark = pytest.mark.slow

# what each role's navigation offers, by label (every page is in exactly the sets that may open it)
PAGES = {"wall_viewer": ["Wall"], "dispatcher": ["Wall", "Dispatch", "Cases", "Announcements", "Replay"],
         "leader": ["Wall", "Cases", "Announcements", "KPIs", "Replay", "Audit"],
         "admin": ["Wall", "Dispatch", "Cases", "Announcements", "KPIs", "Replay", "Audit", "Admin"]}
ALL_PATHS = {"Wall": "/wall", "Dispatch": "/dispatch", "Cases": "/cases", "Announcements": "/announcements",
             "KPIs": "/kpis", "Replay": "/replay", "Audit": "/audit", "Admin": "/admin"}


@pytest.fixture(scope="module")
def logins(stack, city):
    """City-wide logins of every role (TEST_LOGINS), and street-scoped ones of the first street."""
    street = city.streets[0]
    ensure_logins(stack.settings().pg_dsn, {"t-street-leader": ("leader", street.code),
                                            "t-street-viewer": ("wall_viewer", street.code),
                                            "t-street-admin": ("admin", street.code)})
    return street


def _nav(page) -> list[str]:
    page.wait_for_selector("#shell-nav")
    return [re.sub(r"\s.*", "", t) for t in page.locator("#shell-nav a").all_inner_texts()]


def _org_choices(page) -> list[str]:
    """The org selector's choices as the browser lists them (opened, read, closed)."""
    page.click("#shell-org")
    page.wait_for_selector("[role=option]")
    texts = page.locator("[role=option]").all_inner_texts()
    page.keyboard.press("Escape")
    return texts


def _codes(choices: list[str]) -> set[str]:
    return {m.group(1) for text in choices if (m := re.search(r"· (\d+)\s*$", text))}


def test_an_anonymous_browser_is_sent_to_the_login_page_and_back_after_signing_in(dashboard, page):
    page.goto(f"{dashboard.url}/audit?scope=350102")
    page.wait_for_url(re.compile(r"/login\?next=%2Faudit%3Fscope%3D350102$"))
    assert page.locator("#shell").count() == 0 and page.locator("input[name=password]").count() == 1
    page.fill("input[name=username]", "t-leader")
    page.fill("input[name=password]", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/audit\?scope=350102$"))          # where it was going
    page.locator("#audit").wait_for()


@pytest.mark.parametrize("username, role", [("t-viewer", "wall_viewer"), ("t-dispatcher", "dispatcher"),
                                            ("t-leader", "leader"), ("t-admin", "admin")])
def test_each_city_role_sees_exactly_its_pages(dashboard, logins, page, username, role):
    sign_in(page, dashboard.url, username)
    page.goto(f"{dashboard.url}/wall")
    assert _nav(page) == PAGES[role]
    for label, path in ALL_PATHS.items():
        page.goto(f"{dashboard.url}{path}")
        page.wait_for_selector("#shell-page")
        refused = page.locator("#shell-refusal")
        if label in PAGES[role]:
            assert refused.count() == 0, f"{username} refused {path}"
        else:
            refused.wait_for()
            assert "403" in refused.inner_text(), f"{username} was shown {path}"
    assert page.errors == []


def test_a_street_login_chooses_only_its_subtree_and_is_refused_beside_it(dashboard, city, logins, page):
    street = logins
    other = city.streets[1]
    sign_in(page, dashboard.url, "t-street-leader")
    page.goto(f"{dashboard.url}/kpis?scope={street.code}")
    assert _nav(page) == PAGES["leader"]
    inside = {street.code} | {c.code for c in city.communities if c.code.startswith(street.code)}
    assert _codes(_org_choices(page)) == inside           # its street and its communities, nothing above or beside

    page.goto(f"{dashboard.url}/kpis?scope={other.code}")
    page.locator("#shell-refusal").wait_for()
    assert "403" in page.locator("#shell-refusal").inner_text()
    # the selector shows the login's own street, not an empty box or the refused one
    assert street.code in page.locator("#shell-org").inner_text()
    assert other.code not in page.locator("#shell-org").inner_text()
    for unscoped in ("/kpis", "/kpis?scope="):             # nothing asked: the login's own street, never wider
        page.goto(f"{dashboard.url}{unscoped}")
        page.locator("#kpis").wait_for()
        assert city.org_name(street.code) in page.inner_text("#kpis")

    sign_in(page, dashboard.url, "t-viewer")              # a city-wide login chooses from the whole city
    page.goto(f"{dashboard.url}/wall")
    choices = _org_choices(page)
    assert choices[0].startswith(city.name)
    assert _codes(choices) == {u.code for u in [*city.districts, *city.streets, *city.communities]}


def test_the_audit_trail_shows_and_exports_only_the_scope(stack, dashboard, city, logins, page):
    street = logins
    other = city.streets[1]
    marker = uuid.uuid4().hex[:8]
    conn = psycopg2.connect(stack.settings().pg_dsn)
    try:
        with conn, conn.cursor() as cur:     # one refusal in each street, written as the app writes them
            for code in (street.code, other.code):
                cur.execute("insert into audit_log (actor, roles, action, target, scope_code, outcome, reason, "
                            "source_address) values (%s, '{dispatcher}', 'alarm.acknowledge', %s, %s, 'refused', "
                            "'already acknowledged', '10.0.0.9')", (f"=cmd|{marker}", f"alarm:{marker}-{code}", code))
    finally:
        conn.close()

    sign_in(page, dashboard.url, "t-street-leader")
    page.goto(f"{dashboard.url}/audit?scope={street.code}")
    page.fill("#audit-actor", marker)
    page.press("#audit-actor", "Enter")
    wait_for(lambda: page.locator("#audit-table tbody tr").count() == 1, 15, "the street's row only")
    row = page.locator("#audit-table tbody tr").inner_text()
    assert f"{marker}-{street.code}" in row and "refused" in row
    assert f"{marker}-{other.code}" not in page.content()

    # the export: the same selection, as CSV, scoped on the server (the browser's cookie)
    href = page.get_attribute("#audit-export", "href")
    assert f"scope={street.code}" in href and f"actor={marker}" in href
    cookie = session_cookie(dashboard.url, "t-street-leader")
    body = _fetch(dashboard.url + href, cookie).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [r["target"] for r in rows] == [f"alarm:{marker}-{street.code}"]
    assert rows[0]["actor"] == f"'=cmd|{marker}"          # a spreadsheet formula is defused
    widened = href.replace(f"scope={street.code}", f"scope={other.code}")
    with pytest.raises(urllib.error.HTTPError) as refused:
        _fetch(dashboard.url + widened, cookie)
    assert refused.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as refused:   # a dispatcher may not export at all
        _fetch(dashboard.url + href, session_cookie(dashboard.url, "t-dispatcher"))
    assert refused.value.code == 403
    exports = _audit(stack, "select outcome, actor from audit_log where action = 'audit.export' and target like %s "
                            "order by id", (f"%{marker}%",))
    assert exports[:2] == [("done", "t-street-leader"), ("refused", "t-street-leader")]


def test_an_admin_adds_a_user_who_can_sign_in_and_the_trail_says_who_did_it(stack, dashboard, city, browser, page):
    street = city.streets[0]
    username = f"u-{uuid.uuid4().hex[:6]}"
    sign_in(page, dashboard.url, "t-admin")
    page.goto(f"{dashboard.url}/admin")
    page.fill("#admin-new-username", username)
    page.fill("#admin-new-display", "Lin Wei 林伟")
    _choose(page, "#admin-new-role", "Dispatcher")
    _choose(page, "#admin-new-scope", street.code)
    page.click("#admin-add-user")
    page.locator("#admin-secret").wait_for()
    password = page.locator("#admin-secret").inner_text().strip()
    assert len(password) >= 12
    page.locator(f"#admin-user-{username}").wait_for()

    other = browser.new_context().new_page()              # the new user signs in with what was shown
    sign_in(other, dashboard.url, username, password)
    other.goto(f"{dashboard.url}/dispatch?scope={street.code}")
    other.locator("#dispatch").wait_for()
    assert _nav(other) == PAGES["dispatcher"]

    _confirm(page, page.locator(f"#admin-user-{username} button", has_text="Disable"))   # disabling asks first
    wait_for(lambda: "disabled" in page.locator(f"#admin-user-{username}").inner_text(), 15, "disabled",
             explain=lambda: page.locator("#admin-user-result").inner_text())
    other.goto(f"{dashboard.url}/dispatch?scope={street.code}")
    other.wait_for_url(re.compile(r"/login"), timeout=10000)   # the session ended with the disabling
    other.context.close()

    trail = _audit(stack, "select actor, action, outcome, after from audit_log where target = %s order by id",
                   (f"user:{username}",))
    assert [(a, act, o) for a, act, o, _ in trail] == [("t-admin", "user.add", "done"),
                                                       (username, "auth.login", "done"),
                                                       ("t-admin", "user.disable", "done")]
    assert trail[0][3] == {"display_name": "Lin Wei 林伟", "role": "dispatcher", "scope_code": street.code}
    assert password not in str(trail)                     # never stored in the clear, not even in the trail


def test_a_user_of_a_street_cannot_be_made_by_a_street_admin_for_another_street(stack, dashboard, city, logins, page):
    street, other = logins, city.streets[1]
    sign_in(page, dashboard.url, "t-street-admin")
    page.goto(f"{dashboard.url}/admin?scope={street.code}")
    page.locator("#admin-users-table").wait_for()
    listed = page.locator("#admin-users-table tbody tr").all_inner_texts()
    assert not any(t.startswith("t-admin") for t in listed)          # only users of its own subtree
    assert any(t.startswith("t-street-leader") for t in listed)
    # the scope offered is its own subtree; a forged scope in the callback is refused by the server
    result = _run_callback(dashboard.url, session_cookie(dashboard.url, "t-street-admin"), other.code)
    assert "outside" in result, result
    assert _audit(stack, "select outcome from audit_log where action = 'user.add' and actor = 't-street-admin' "
                         "and scope_code = %s", (other.code,)) == [("refused",)]


def test_an_admin_creates_a_wall_token_whose_screen_opens_without_a_keyboard(stack, dashboard, city, browser, page):
    community = city.communities[0]
    name = f"Lobby screen {uuid.uuid4().hex[:4]}"
    sign_in(page, dashboard.url, "t-admin")
    page.goto(f"{dashboard.url}/admin")
    page.fill("#admin-new-token-name", name)
    _choose(page, "#admin-new-token-scope", community.code)
    page.click("#admin-add-token")
    page.locator("#admin-secret").wait_for()
    url = page.locator("#admin-secret").inner_text().strip()
    assert "/wall?kiosk=1&token=" in url

    screen = browser.new_context().new_page()
    screen.goto(url)
    screen.wait_for_url(lambda u: "token=" not in u, timeout=15000)
    wait_wall_connection(screen)
    assert screen.inner_text("#wall-scope-name") == city.org_name(community.code)

    token_id = _audit(stack, "select id from wall_tokens where name = %s", (name,))[0][0]
    _confirm(page, page.locator(f"#admin-token-{token_id} button", has_text="Revoke"))
    wait_for(lambda: "revoked" in page.locator(f"#admin-token-{token_id}").inner_text(), 15, "revoked on the page",
             explain=lambda: page.locator("#admin-token-result").inner_text())
    wait_wall_connection(screen, live=False)              # the socket was closed by the server
    screen.context.close()
    assert [r[0] for r in _audit(stack, "select action from audit_log where target in (%s, %s) order by id",
                                 (f"wall_token:{name}", f"wall_token:{token_id}"))] == \
        ["wall_token.create", "auth.token", "wall_token.revoke"]


def test_the_command_line_changes_are_audited_too(stack, monkeypatch, capsys):
    for key, value in stack.app_env("dashboard").items():
        monkeypatch.setenv(key, value)
    username = f"c-{uuid.uuid4().hex[:6]}"
    assert users_cli(["add", username, "--role", "leader", "--scope", "350102"]) == 0
    password = re.search(r"shown once: (\S+)", capsys.readouterr().out).group(1)
    accounts = Accounts(stack.settings().pg_dsn, pool_size=1)
    try:
        assert accounts.login(username, password, "127.0.0.1", None, datetime.now(timezone.utc)).ok
    finally:
        accounts.close()
    assert users_cli(["add", username, "--role", "leader"]) == 2                 # taken: refused, and said why
    assert "already a user" in capsys.readouterr().err
    assert users_cli(["add", f"d-{username}", "--role", "leader", "--scope", "999"]) == 2
    assert users_cli(["disable", username]) == 0
    trail = _audit(stack, "select actor, action, outcome from audit_log where target = %s and action like 'user.%%' "
                          "order by id", (f"user:{username}",))
    assert trail == [("cli", "user.add", "done"), ("cli", "user.add", "refused"), ("cli", "user.disable", "done")]


# --- helpers ----------------------------------------------------------------------------------------
def _fetch(url: str, cookie: str) -> bytes:
    request = urllib.request.Request(url, headers={"Cookie": cookie})
    with urllib.request.urlopen(request, timeout=20) as response:
        return response.read()


def _audit(stack, query: str, args: tuple) -> list[tuple]:
    return owner_rows(stack, query, *args)


def _choose(page, dropdown: str, text: str) -> None:
    page.click(dropdown)
    page.locator("[role=option]", has_text=text).first.click()


def _confirm(page, button) -> None:
    """Click a button that asks first (dcc.ConfirmDialogProvider) and accept the question; fails
    here, saying so, if no question came (a click the page missed), not later as a timeout."""
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    button.click()
    wait_for(lambda: asked, 10, "the confirmation dialog")


def _run_callback(base_url: str, cookie: str, scope_code: str) -> str:
    """The admin page's add-user callback, as a browser would send it, with a scope of our choosing."""
    body = {"output": "..admin-user-result.children...admin-users.children..",
            "outputs": [{"id": "admin-user-result", "property": "children"},
                        {"id": "admin-users", "property": "children"}],
            "inputs": [{"id": "admin-add-user", "property": "n_clicks", "value": 1},
                       [{"id": {"type": "admin-user", "user": "x", "do": "password"}, "property": "submit_n_clicks",
                         "value": None}]],
            "changedPropIds": ["admin-add-user.n_clicks"],
            "state": [{"id": "admin-new-username", "property": "value", "value": f"f-{uuid.uuid4().hex[:6]}"},
                      {"id": "admin-new-display", "property": "value", "value": "forged"},
                      {"id": "admin-new-role", "property": "value", "value": "admin"},
                      {"id": "admin-new-scope", "property": "value", "value": scope_code}]}
    return post_callback(base_url, cookie, body)


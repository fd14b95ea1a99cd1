"""The basic-data page (/ledger) in Chromium, as each role that works on a community's ledger:

- a leader granted UNMASK and RESTRICTED_TAGS for community A (1920×1080): search, the building
  panel (floors × houses, coloured by use, marked), a house's household head first, the restricted
  tag shown; "show in full" refused without a reason, then with one the values in full and one audit
  row (who, which resident, the reason, the grid; never the values);
- a leader of the same community without grants (1366×768): masked everywhere, no unmask control,
  no restricted tag or mark; the unmask callback the granted leader's browser sent, replayed with
  this leader's session, is refused and audited; a search forged for another community is refused;
- a dispatcher is refused the page;
- every payload the browser receives (the page, each callback's answer) carries no ID number or
  phone in full, but the one answer to an audited unmask;
- hostile strings in a building's and a resident's name render as text.

Screenshots: /tmp/ledger-*.png."""
from __future__ import annotations

import json
import secrets
from contextlib import closing

import psycopg2
import pytest
from playwright.sync_api import expect

from core.catalogue import AuditAction
from core.ledger import TAG_LABELS, Permission, Tag

from .hostile_text import COUNT_XSS, PLANTED_ELEMENTS, hostile
from .screens import ensure_logins, post_callback, session_cookie, sign_in
from .test_ledger_reads import GRANTED_A, LEADER_A, SURNAME, grant_as_admin, ledger_sealer, plant_ledger, remove_ledger

pytestmark = pytest.mark.slow
WAIT_MS = 20_000


@pytest.fixture(scope="module")
def planted(stack, city):
    dsn = stack.settings().pg_dsn
    found = plant_ledger(dsn, city, ledger_sealer(stack), secrets.token_hex(3),
                         hostile_building=hostile("ledger building"), hostile_resident=hostile("ledger resident"))
    ensure_logins(dsn, {LEADER_A: ("leader", found.community_a), GRANTED_A: ("leader", found.community_a)})
    for permission in Permission:
        grant_as_admin(dsn, GRANTED_A, permission, found.community_a)
    yield found
    remove_ledger(dsn, found, (LEADER_A, GRANTED_A))


class Payloads:
    """Every answer the page's origin sends the browser (the page, each callback's), kept to read
    after the step (reading a body inside Playwright's event handler would block its dispatcher)."""

    def __init__(self, page) -> None:
        self.responses, self.sent = [], []
        page.on("response", self._response)

    def _response(self, response) -> None:
        if "/assets/" not in response.url and "_dash-component-suites" not in response.url:
            self.responses.append(response)
            self.sent.append(response.request)

    def unmask_requests(self) -> list[str]:
        """The bodies of the unmask callback's requests the browser sent."""
        bodies = [r.post_data or "" for r in self.sent if "/_dash-update-component" in r.url]
        return [b for b in bodies if "ledger-unmask-go" in b]

    def texts(self) -> list[str]:
        found = []
        for response in self.responses:
            try:
                found.append(response.text())
            except Exception:  # noqa: BLE001 (a redirect or an aborted request has no body)
                continue
        self.responses = []
        return found


def _full_values(planted) -> set[str]:
    return {v for p in planted.people.values() for v in (p.id_number, p.phone)}


def _leaks(texts: list[str], planted) -> list[str]:
    """Full values found in payloads (JSON escapes nothing in digits: a plain search is enough)."""
    return [v for v in _full_values(planted) for t in texts if v in t]


def _open_ledger(page, base_url: str, username: str, scope: str) -> None:
    page.add_init_script(COUNT_XSS)
    sign_in(page, base_url, username)
    page.goto(f"{base_url}/ledger?scope={scope}")
    page.locator("#ledger-building").wait_for(timeout=WAIT_MS)


def _search(page, text: str) -> None:
    page.fill("#ledger-search", text)
    page.press("#ledger-search", "Enter")
    page.locator("#ledger-results-table tbody tr, #ledger-results .placeholder, #ledger-results .audit-error") \
        .first.wait_for(timeout=WAIT_MS)


def _row(page, name: str):
    return page.locator("#ledger-results-table tbody tr", has_text=name)


def _audit_rows(dsn: str, resident_id: int, since: int) -> list[tuple]:
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute("select actor, outcome, reason, scope_code, coalesce(before::text, '') || coalesce(after::text, '')"
                    " from audit_log where action = %s and target = %s and id > %s order by id",
                    (AuditAction.LEDGER_UNMASK.value, f"resident:{resident_id}", since))
        return cur.fetchall()


def _last_audit_id(dsn: str) -> int:
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute("select coalesce(max(id), 0) from audit_log")
        return cur.fetchone()[0]


def test_a_granted_leader_searches_opens_a_house_and_unmasks_with_a_reason_audited(stack, dashboard, browser,
                                                                                    planted):
    dsn, head, tenant = stack.settings().pg_dsn, planted.people["head"], planted.people["tenant"]
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    payloads, errors = Payloads(page), []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        _open_ledger(page, dashboard.url, GRANTED_A, planted.community_a)
        _search(page, SURNAME)
        assert _row(page, tenant.name).inner_text().count(str(TAG_LABELS[Tag.COMMUNITY_CORRECTION])) == 1
        assert _row(page, planted.people["other"].name).count() == 0             # community B's
        _row(page, head.name).locator("button", has_text="501").click()
        page.locator("#ledger-house-view").wait_for(timeout=WAIT_MS)
        page.locator("#ledger-building-grid button.ledger-house").first.wait_for(timeout=WAIT_MS)
        names = page.locator("#ledger-house-view .ledger-name").all_inner_texts()
        assert names == [head.name, planted.people["spouse"].name, planted.people["child"].name]
        cells = page.locator("#ledger-building-grid tbody tr").first.locator("button.ledger-house")
        assert cells.all_inner_texts()[:2] == ["601", "602"]                      # the top floor first
        expect(page.locator("#ledger-building-grid button", has_text="201").filter(has_text="◆")).to_have_count(1)
        page.screenshot(path="/tmp/ledger-granted-1920.png", full_page=True)
        before = payloads.texts()
        assert before and _leaks(before, planted) == []

        since = _last_audit_id(dsn)
        page.locator("#ledger-house-view tr", has_text=head.name).locator("[id*=ledger-unmask-pick]").click()
        page.locator("#ledger-unmask-whom", has_text=head.id_number[:4]).wait_for(timeout=WAIT_MS)
        page.click("#ledger-unmask-go")
        page.locator("#ledger-unmask-result .admin-refused", has_text="reason").wait_for(timeout=WAIT_MS)
        page.fill("#ledger-unmask-reason", "household visit: confirm the head's identity")
        page.click("#ledger-unmask-go")
        page.locator("#ledger-unmasked", has_text=head.id_number).wait_for(timeout=WAIT_MS)
        assert head.phone in page.locator("#ledger-unmasked").inner_text()
        page.screenshot(path="/tmp/ledger-unmasked-1920.png", full_page=True)
        page.click("#ledger-unmask-close")                                        # the values leave the screen
        page.locator("#ledger-unmasked").wait_for(state="detached", timeout=WAIT_MS)
        after = payloads.texts()
        assert set(_leaks(after, planted)) == {head.id_number, head.phone}       # the unmask's answer alone
        rows = _audit_rows(dsn, head.resident_id, since)
        assert [r[:4] for r in rows] == [(GRANTED_A, "refused", rows[0][2], planted.community_a),   # the asker's
                                         (GRANTED_A, "done", "household visit: confirm the head's identity",
                                          planted.grid_a)]
        assert all(head.id_number not in str(r) and head.phone not in str(r) for r in rows)
        assert page.evaluate("window.gccXssRuns") == 0 and errors == []
        sent = payloads.unmask_requests()
    finally:
        context.close()

    since = _last_audit_id(dsn)      # what this browser sent, replayed with the session of a leader without the grant
    answer = post_callback(dashboard.url, session_cookie(dashboard.url, LEADER_A), json.loads(sent[-1]))
    assert "Refused" in answer and head.id_number not in answer and head.phone not in answer
    assert [r[:2] for r in _audit_rows(dsn, head.resident_id, since)] == [(LEADER_A, "refused")]


def test_a_leader_without_grants_sees_masks_only_and_no_unmask_control(stack, dashboard, browser,
                                                                                  planted):
    head, tenant = planted.people["head"], planted.people["tenant"]
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    payloads = Payloads(page)
    try:
        _open_ledger(page, dashboard.url, LEADER_A, planted.community_a)
        _search(page, SURNAME)
        assert str(TAG_LABELS[Tag.VETERAN]) in _row(page, tenant.name).inner_text()
        assert str(TAG_LABELS[Tag.COMMUNITY_CORRECTION]) not in page.inner_text("#ledger")
        assert page.locator("[id*=ledger-unmask]").count() == 0                  # no control at all
        _row(page, tenant.name).locator("button", has_text="201").click()
        page.locator("#ledger-house-view", has_text=tenant.name).wait_for(timeout=WAIT_MS)
        expect(page.locator("#ledger-building-grid button", has_text="●")).to_have_count(2)   # 501 and 302
        assert page.locator("#ledger-building-grid button", has_text="◆").count() == 0
        assert head.id_number[:4] + "**********" + head.id_number[-4:] in _row(page, head.name).inner_text()
        page.screenshot(path="/tmp/ledger-leader-1366.png", full_page=True)
        assert _leaks(payloads.texts(), planted) == []
    finally:
        context.close()


def test_a_search_forged_for_another_community_is_refused(dashboard, planted):
    body = {"output": "ledger-results.children", "outputs": {"id": "ledger-results", "property": "children"},
            "inputs": [{"id": "ledger-search", "property": "value", "value": SURNAME},
                       {"id": "ledger-search-kind", "property": "value", "value": "name"}],
            "state": [{"id": "shell-url", "property": "search", "value": f"?scope={planted.community_b}"}],
            "changedPropIds": ["ledger-search.value"]}
    answer = post_callback(dashboard.url, session_cookie(dashboard.url, LEADER_A), body)
    assert "outside" in answer and planted.people["other"].name not in answer
    own = post_callback(dashboard.url, session_cookie(dashboard.url, "t-admin"), body)     # the city's admin may
    assert planted.people["other"].name in own and planted.people["other"].id_number not in own


def test_a_dispatcher_is_refused_the_page(dashboard, page):
    sign_in(page, dashboard.url, "t-dispatcher")
    page.goto(f"{dashboard.url}/ledger")
    assert "403" in page.locator("#shell-refusal").inner_text(timeout=WAIT_MS)
    assert page.locator("#ledger").count() == 0


def test_hostile_names_render_as_text(dashboard, browser, planted):
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    try:
        _open_ledger(page, dashboard.url, GRANTED_A, planted.community_a)
        _search(page, "XSS[ledger resident]")
        _row(page, "XSS[ledger resident]").locator("button", has_text="101").click()
        page.locator("#ledger-house-view").wait_for(timeout=WAIT_MS)
        text = page.inner_text("#ledger")
        assert "XSS[ledger resident]<img src=x onerror=gccXss()>" in text
        assert "XSS[ledger building]<img src=x onerror=gccXss()>" in text
        assert page.evaluate(PLANTED_ELEMENTS) == 0 and page.evaluate("window.gccXssRuns") == 0
        page.screenshot(path="/tmp/ledger-hostile-1366.png", full_page=True)
    finally:
        context.close()


def test_crafted_ids_are_refused_in_words(dashboard, planted):
    """A house or a resident named by anything but a ledger id gets a refusal, not a server error."""
    cookie = session_cookie(dashboard.url, GRANTED_A)
    url_state = {"id": "shell-url", "property": "search", "value": f"?scope={planted.community_a}"}
    house = {"output": "ledger-house-detail.children", "outputs": {"id": "ledger-house-detail", "property": "children"},
             "inputs": [{"id": "ledger-house", "property": "data", "value": "1; drop table houses"}],
             "state": [url_state], "changedPropIds": ["ledger-house.data"]}
    crafted = {"resident": "1 or 1=1", "type": "ledger-unmask-pick"}
    pick = {"output": "..ledger-unmask.style...ledger-unmask-resident.data...ledger-unmask-whom.children..."
                      "ledger-unmask-reason.value...ledger-unmask-result.children..",
            "outputs": [{"id": i, "property": p} for i, p in (
                ("ledger-unmask", "style"), ("ledger-unmask-resident", "data"), ("ledger-unmask-whom", "children"),
                ("ledger-unmask-reason", "value"), ("ledger-unmask-result", "children"))],
            "inputs": [[{"id": crafted, "property": "n_clicks", "value": 1}],
                       {"id": "ledger-unmask-close", "property": "n_clicks", "value": None}], "state": [url_state],
            "changedPropIds": [json.dumps(crafted, separators=(",", ":"), sort_keys=True) + ".n_clicks"]}
    for body in (house, pick):
        assert "Refused" in post_callback(dashboard.url, cookie, body)

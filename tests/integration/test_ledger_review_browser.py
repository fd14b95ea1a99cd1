"""The registration's whole way (issue 26's Done-when): a member's registration from the handheld
reaches the community's review queue and, approved, the building panel.

In one test, against the real device-facing service and the dashboard, in Chromium: a member's
phone (360×640) registers two new residents in a house of this test's own building, the first
with the ID number of a resident the ledger already holds; a community leader (1920×1080) sees
both in the review queue (/ledger/review), the first flagged in red as a duplicate naming the
resident it repeats, edits its name and approves it, while a second leader's queue (1366×768)
loses it at its next refresh and that leader's late approval is refused already_decided; the
basic-data page shows the new resident in that house with the ID number masked; the second
registration is sent back with a reason, and the phone's 我的登记 shows 已退回 with it. No
dashboard payload carries an ID number or phone in full. A forged detail or approval for another
community's registration, or by a dispatcher, is refused (and audited), and the page is 403 for a
dispatcher.

Screenshots: /tmp/ledger-review-*.png."""
from __future__ import annotations

import secrets
import urllib.error
import uuid
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime, timezone

import psycopg2
import pytest

from core.catalogue import AuditAction
from core.ledger import (
    SUBMISSION_STATE_LABELS,
    Gender,
    HouseUse,
    Registration,
    Relation,
    SubmissionKind,
    SubmissionState,
)
from ledger import privacy, submissions

from .handheld_browser import (  # noqa: F401 - the *_fixture names: the fixtures these tests use
    phone_service_fixture,
    phones_fixture,
    registry_fixture,
)
from .screens import ensure_logins, post_callback, session_cookie, sign_in
from .test_handheld_registrations import id_number
from .test_ledger_browser import Payloads
from .test_ledger_reads import ledger_sealer

pytestmark = pytest.mark.slow
WAIT_MS = 30_000
LEADER, SECOND = "t-review-leader", "t-review-leader2"
BORN = date(1986, 4, 12)


@dataclass
class Home:
    member: object
    community_code: str
    building_id: str
    building_name: str
    house_id: int
    household_id: int
    twin_id: int              # the resident already in the ledger whose ID number is registered again
    twin_id_number: str


def the_member(city):
    """The member whose phone registers (a grid with buildings), and their community."""
    with_buildings = {b.grid_code for b in city.buildings}
    eligible = [m for m in city.members if m.grid_code in with_buildings]
    member = eligible[len(eligible) // 3]
    return member, city.grid_by_code[member.grid_code].community_code


@pytest.fixture
def home(stack, city):
    """A building of this test's own in a member's grid: house 301 with a household (its head) and
    house 302 with a resident whose ID number the phone will register again; the leaders' logins."""
    member, community = the_member(city)
    token = secrets.token_hex(3)
    building_id, name = f"t-review-{token}", f"0审核测试楼 {token}"
    twin_number = id_number(BORN, f"{secrets.randbelow(1000):03d}")      # the birth date the phone types
    sealer = ledger_sealer(stack)
    dsn = stack.settings().pg_dsn
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute("insert into buildings (building_id, grid_code, name, lon, lat, floors, households, entrances)"
                    " values (%s, %s, %s, 119.3, 26.08, 6, 12, 1)", (building_id, member.grid_code, name))
        houses = []
        for number in ("301", "302"):
            cur.execute("insert into houses (building_id, grid_code, entrance, floor, number, area_m2, use)"
                        " values (%s, %s, 1, 3, %s, 76, %s) returning house_id",
                        (building_id, member.grid_code, number, HouseUse.RENTED.value))
            house_id = cur.fetchone()[0]
            cur.execute("insert into households (house_id) values (%s) returning household_id", (house_id,))
            houses.append((house_id, cur.fetchone()[0]))
        residents = []
        for (_, household_id), (who, number) in zip(houses, (("户主", None), ("原住户", twin_number)),
                                                           strict=True):
            sealed = (sealer.seal(privacy.ID_NUMBER, number), sealer.index(privacy.ID_NUMBER, number),
                      privacy.mask_id_number(number)) if number else (None, None, None)
            cur.execute("insert into residents (household_id, grid_code, relation, name, gender, birth_date,"
                        " id_number_sealed, id_number_index, id_number_masked, registration)"
                        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) returning resident_id",
                        (household_id, member.grid_code, Relation.HEAD.value, f"审核{who}{token}", Gender.MALE.value,
                         BORN, *sealed, Registration.LOCAL.value))
            residents.append(cur.fetchone()[0])
            cur.execute("update households set head_id = %s where household_id = %s", (residents[-1], household_id))
    ensure_logins(dsn, {LEADER: ("leader", community), SECOND: ("leader", community)})
    yield Home(member, community, building_id, name, houses[0][0], houses[0][1], residents[1], twin_number)
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        ids = [str(h) for h, _ in houses]
        cur.execute("delete from ledger_changes where submission_id in (select submission_id from ledger_submissions"
                    " where member_id = %s and payload ->> 'house_id' = any(%s))", (member.member_id, ids))
        cur.execute("delete from ledger_submissions where member_id = %s and payload ->> 'house_id' = any(%s)",
                    (member.member_id, ids))
        cur.execute("update households set head_id = null where house_id = any(%s)", ([h for h, _ in houses],))
        cur.execute("delete from residents where household_id in (select household_id from households"
                    " where house_id = any(%s))", ([h for h, _ in houses],))
        cur.execute("delete from households where house_id = any(%s)", ([h for h, _ in houses],))
        cur.execute("delete from houses where building_id = %s", (building_id,))
        cur.execute("delete from buildings where building_id = %s", (building_id,))


def _register(phone, home: Home, name: str, number: str, mobile: str) -> None:
    """The new-resident form on the phone: into the house's household, as a tenant; sent at once."""
    page = phone.page
    phone.go("more")
    page.locator("a.menu-entry[href='#registration']").tap()
    page.locator(f"a.menu-entry[data-kind={SubmissionKind.NEW_RESIDENT.value}]").tap()
    page.locator("select[name=building]").wait_for(timeout=WAIT_MS)
    page.select_option("select[name=building]", home.building_id)
    page.locator(f"select[name=house] option[value='{home.house_id}']").wait_for(state="attached", timeout=WAIT_MS)
    page.select_option("select[name=house]", str(home.house_id))
    page.locator(f".reg-households button[data-value='{home.household_id}']").tap()
    page.fill("input[name=name]", name)
    page.locator(f".reg-gender button[data-value={Gender.FEMALE.value}]").tap()
    page.fill("input[name=birth_date]", BORN.isoformat())
    page.fill("input[name=id_number]", number)
    page.fill("input[name=phone]", mobile)
    page.locator(f".reg-registration button[data-value={Registration.FLOATING.value}]").tap()
    page.select_option("select[name=relation]", Relation.TENANT.value)
    page.locator("button.reg-save").tap()
    waiting = SUBMISSION_STATE_LABELS[SubmissionState.PENDING].zh
    page.locator(".reg-item", has_text=name).get_by_text(waiting).wait_for(timeout=WAIT_MS)


def _reviewer(browser, base_url: str, username: str, viewport: dict, community: str):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    payloads = Payloads(page)
    sign_in(page, base_url, username)
    page.goto(f"{base_url}/ledger/review?scope={community}")
    page.locator("#review-queue-table, #review-queue .placeholder").first.wait_for(timeout=WAIT_MS)
    return context, page, payloads


def _queue_row(page, name: str):
    return page.locator("#review-queue-table tbody tr", has_text=name)


def test_a_registration_from_the_phone_is_reviewed_and_reaches_the_building_panel(
        stack, city, dashboard, browser, phones, registry, home):
    first, second = f"审核新{home.building_id[-6:]}", f"审核退{home.building_id[-6:]}"
    second_number, first_phone, second_phone = id_number(BORN, "218"), "13700137001", "13700137002"
    phone = phones(home.member, city)
    phone.enrol(registry)
    _register(phone, home, first, home.twin_id_number, first_phone)        # repeats the twin's ID number
    _register(phone, home, second, second_number, second_phone)

    context, page, payloads = _reviewer(browser, dashboard.url, LEADER, {"width": 1920, "height": 1080},
                                        home.community_code)
    other, other_page, other_payloads = _reviewer(browser, dashboard.url, SECOND, {"width": 1366, "height": 768},
                                                  home.community_code)
    try:
        row = _queue_row(page, first)
        row.wait_for(timeout=WAIT_MS)
        flag = row.locator(".review-duplicate")
        assert "same ID number" in flag.inner_text() and f"审核原住户{home.building_id[-6:]}" in flag.inner_text()
        assert _queue_row(page, second).locator(".review-duplicate").count() == 0
        assert home.member.name in row.inner_text() and "301" in row.inner_text()
        row.locator("button[id*=review-pick]").click()
        page.locator("#review-view #review-fields", has_text=first).wait_for(timeout=WAIT_MS)
        assert privacy.mask_id_number(home.twin_id_number) in page.inner_text("#review-fields")
        page.locator("#review-edit summary").click()
        page.screenshot(path="/tmp/ledger-review-1920.png", full_page=True)
        _queue_row(other_page, first).wait_for(timeout=WAIT_MS)
        _queue_row(other_page, first).locator("button[id*=review-pick]").click()      # the other opens it too
        other_page.locator("#review-fields", has_text=first).wait_for(timeout=WAIT_MS)
        other_page.screenshot(path="/tmp/ledger-review-1366.png", full_page=True)

        retyped = page.locator("#review-edit input[id*='\"field\":\"id_number\"']")
        retyped.fill(home.twin_id_number)                                    # the reviewer checks the number
        retyped.press("Tab")
        preview = page.locator("#review-edit-duplicates .review-duplicate", has_text="same ID number")
        preview.wait_for(timeout=WAIT_MS)
        assert f"审核原住户{home.building_id[-6:]}" in preview.inner_text()
        retyped.fill(privacy.mask_id_number(home.twin_id_number))            # left as the mask: no edit
        retyped.press("Tab")
        preview.wait_for(state="detached", timeout=WAIT_MS)
        edited = first + "琳"
        page.fill("#review-edit input[id*='\"field\":\"name\"']", edited)
        page.click("#review-edit-approve")
        page.locator("#review-done").wait_for(timeout=WAIT_MS)
        page.locator("#review-decided-note").wait_for(timeout=WAIT_MS)
        row.wait_for(state="detached", timeout=WAIT_MS)                    # gone from this queue at once
        _queue_row(other_page, first).wait_for(state="detached", timeout=WAIT_MS)   # and the other's, refreshed
        other_page.click("#review-approve")                                  # late: already decided, said so
        other_page.locator("#review-result .admin-refused", has_text="already_decided").wait_for(timeout=WAIT_MS)
        assert LEADER in other_page.locator("#review-decided-note").inner_text(timeout=WAIT_MS)

        _queue_row(page, second).locator("button[id*=review-pick]").click()
        page.locator("#review-fields", has_text=second).wait_for(timeout=WAIT_MS)
        page.click("#review-send-back")
        page.locator("#review-result .admin-refused", has_text="reason").wait_for(timeout=WAIT_MS)
        reason = "身份证号与本人不符，请入户核对后重报"
        page.fill("#review-reason", reason)
        page.click("#review-send-back")
        page.locator("#review-done").wait_for(timeout=WAIT_MS)
        _queue_row(page, second).wait_for(state="detached", timeout=WAIT_MS)
        page.screenshot(path="/tmp/ledger-review-decided-1920.png", full_page=True)

        page.goto(f"{dashboard.url}/ledger?scope={home.community_code}")     # the basic-data page
        page.fill("#ledger-search", edited)
        page.press("#ledger-search", "Enter")
        found = page.locator("#ledger-results-table tbody tr", has_text=edited)
        found.locator("button", has_text="301").click()
        house = page.locator("#ledger-house-view")
        house.locator("tr", has_text=edited).wait_for(timeout=WAIT_MS)
        assert privacy.mask_id_number(home.twin_id_number) in house.locator("tr", has_text=edited).inner_text()
        page.locator("#ledger-building-grid button", has_text="301").wait_for(timeout=WAIT_MS)
        assert second not in house.inner_text()
        page.screenshot(path="/tmp/ledger-review-panel-1920.png", full_page=True)
        with closing(psycopg2.connect(stack.settings().pg_dsn)) as conn, conn, conn.cursor() as cur:
            cur.execute("select a.actor, a.after ->> 'edited' from audit_log a join ledger_submissions s on"
                        " a.target = 'submission:' || s.submission_id where s.member_id = %s and"
                        " s.payload ->> 'name' = %s and a.action = %s and a.outcome = 'done'",
                        (home.member.member_id, first, AuditAction.LEDGER_APPROVE.value))
            assert cur.fetchall() == [(LEADER, '["name"]')]          # the mask left as it was is no edit
        full = {home.twin_id_number, second_number, first_phone, second_phone}
        sent = payloads.texts() + other_payloads.texts()
        assert sent and [v for v in full for t in sent if v in t] == []
        assert page.errors == [] and other_page.errors == []
    finally:
        context.close()
        other.close()

    phone.go("more")                                                        # the member reads why
    phone.page.locator("a.menu-entry[href='#registration']").tap()
    returned = phone.page.locator(".reg-item", has_text=second)
    returned.get_by_text(SUBMISSION_STATE_LABELS[SubmissionState.RETURNED].zh).wait_for(timeout=WAIT_MS)
    assert reason in returned.inner_text()
    approved = SUBMISSION_STATE_LABELS[SubmissionState.APPROVED].zh
    phone.page.locator(".reg-item", has_text=first).get_by_text(approved).wait_for(timeout=WAIT_MS)
    phone.shot("registration-3-reviewed", returned)
    assert phone.page.errors == []


@pytest.fixture
def forged(stack, city):
    """Two registrations (house use changed: nothing personal) of a member of this test's own, one in
    the leader's community and one in another; the leader's login."""
    member, community = the_member(city)
    elsewhere = next(g for g in city.grids if g.community_code != community)
    member_id, dsn = f"t-review-forger-{secrets.token_hex(3)}", stack.settings().pg_dsn
    ids = {}
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        for where, grid in (("inside", member.grid_code), ("outside", elsewhere.code)):
            ids[where] = str(uuid.uuid4())
            assert submissions.submit(cur, ledger_sealer(stack), ids[where], SubmissionKind.HOUSE_USE_CHANGED, grid,
                                      city.grid_by_code[grid].community_code, "T-forger", member_id, None,
                                      datetime.now(timezone.utc), None, None,
                                      {"house_id": 1, "use": HouseUse.VACANT.value}, [])
    ensure_logins(dsn, {LEADER: ("leader", community)})
    yield ids
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute("delete from ledger_submissions where member_id = %s", (member_id,))


def _callback_key(part: str) -> str:
    """The output key Dash dispatches a callback of the review page on (allow_duplicate adds a hash)."""
    import dashboard.pages.ledger_review  # noqa: F401 - registers the page's callbacks here too
    from dashboard.declarations import callbacks

    return next(k for k in callbacks() if part in k)


def _detail_body(submission_id: str, scope: str) -> dict:
    key = _callback_key("review-detail.children")
    return {"output": key, "outputs": [{"id": "review-detail", "property": "children"},
                                       {"id": "review-result", "property": "children"}],
            "inputs": [{"id": "review-picked", "property": "data", "value": submission_id},
                       {"id": "review-decided", "property": "data", "value": None}],
            "state": [{"id": "shell-url", "property": "search", "value": f"?scope={scope}"}],
            "changedPropIds": ["review-picked.data"]}


def _approve_body(submission_id: str, scope: str) -> dict:
    key = _callback_key("review-decided.data")
    result = key.strip(".").split("...")[0]
    return {"output": key, "outputs": [{"id": "review-result", "property": result.split(".", 1)[1]},
                                       {"id": "review-decided", "property": "data"}],
            "inputs": [{"id": "review-approve", "property": "n_clicks", "value": 1},
                       {"id": "review-edit-approve", "property": "n_clicks", "value": None},
                       {"id": "review-send-back", "property": "n_clicks", "value": None}],
            "state": [{"id": "review-picked", "property": "data", "value": submission_id}, [],
                      {"id": "review-reason", "property": "value", "value": None},
                      {"id": "shell-url", "property": "search", "value": f"?scope={scope}"}],
            "changedPropIds": ["review-approve.n_clicks"]}


def _pending(stack, submission_id: str) -> bool:
    with closing(psycopg2.connect(stack.settings().pg_dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute("select state from ledger_submissions where submission_id = %s", (submission_id,))
        return cur.fetchone() == (SubmissionState.PENDING.value,)


def test_forged_callbacks_for_another_scope_or_role_are_refused_and_audited(stack, city, dashboard, forged):
    member, community = the_member(city)
    leader = session_cookie(dashboard.url, LEADER)
    own = post_callback(dashboard.url, leader, _detail_body(forged["inside"], community))
    assert "review-fields" in own and "Refused" not in own                  # the leader's own community's
    for scope in (community, ""):                                           # the other's, under either scope
        answer = post_callback(dashboard.url, leader, _detail_body(forged["outside"], scope))
        assert "Refused" in answer and "review-fields" not in answer
    with closing(psycopg2.connect(stack.settings().pg_dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute("select count(*) from audit_log where actor = %s and outcome = 'refused' and target = %s",
                    (LEADER, f"submission:{forged['outside']}"))
        assert cur.fetchone()[0] >= 1
    answer = post_callback(dashboard.url, leader, _approve_body(forged["outside"], community))
    assert "Refused" in answer and "outside" in answer
    dispatcher = session_cookie(dashboard.url, "t-dispatcher")
    try:
        refused = post_callback(dashboard.url, dispatcher, _approve_body(forged["inside"], community))
    except urllib.error.HTTPError as error:                                  # the gate's refusal
        refused = f"Refused {error.code}"
    assert "Refused" in refused or "403" in refused
    assert _pending(stack, forged["inside"]) and _pending(stack, forged["outside"])


def test_a_dispatcher_is_refused_the_page(dashboard, page):
    sign_in(page, dashboard.url, "t-dispatcher")
    page.goto(f"{dashboard.url}/ledger/review")
    assert "403" in page.locator("#shell-refusal").inner_text(timeout=WAIT_MS)
    assert page.locator("#review").count() == 0

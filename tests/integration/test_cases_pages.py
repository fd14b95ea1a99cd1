"""The case list and a case's page in the browser (Chromium): a dispatcher registers and dispatches
a case from its page and sees it in the timeline; a leader is offered what a leader may do; a
street's login cannot open another street's case by its number (refused, audited); the list
filters and exports what the scope holds (a wall viewer gets neither); an admin's new version of
the time limits is what a new case's clock uses, and a calendar day set is kept and audited; a
leader (who enters no case) sees the list too, with no error in the browser's console."""
from __future__ import annotations

import csv
import io
import urllib.error
import urllib.request
from datetime import date, datetime, timedelta, timezone

import psycopg2
import pytest

from cases import store
from cases.intake import INTAKE
from cases.limits import Limit, Stage, Urgency
from cases.machine import open_case
from cases.model import Source

from ..support import wait_for
from .ingest_helpers import owner_rows
from .screens import ensure_logins, session_cookie, sign_in
from .test_case_notices import _reported_case
from .test_cases_engine import seeded

pytestmark = pytest.mark.slow


def screens_seeded(stack, city):
    """The cases engine's settings with the rules seeded, and the screens' test logins (a street
    dispatcher of the first street among them)."""
    settings = seeded(stack)
    ensure_logins(stack.settings().pg_dsn)
    ensure_logins(stack.settings().pg_dsn, {"t-street0-dispatcher": ("dispatcher", city.streets[0].code)})
    return settings


@pytest.fixture(scope="module")
def cases_settings(stack, city):
    return screens_seeded(stack, city)


def _grid_in(city, street_index: int, n: int = 0):
    street = city.streets[street_index].code
    return [g for g in city.grids if g.code.startswith(street)][n]


def _state(stack, case_id: str) -> str:
    return owner_rows(stack, "select state from cases where case_id = %s", case_id)[0][0]


def test_a_dispatcher_registers_and_dispatches_a_case_from_its_page(stack, city, dashboard, cases_settings, page):
    grid = _grid_in(city, 0, 3)
    case_id = _reported_case(stack, cases_settings, grid.code)
    sign_in(page, dashboard.url, "t-dispatcher")
    page.goto(f"{dashboard.url}/case/{case_id}")
    page.wait_for_selector("#case-number")
    assert page.inner_text("#case-number") == case_id and "reported" in page.inner_text("#case-state")
    page.click(".case-do-register")
    page.wait_for_selector(".case-do-dispatch")                        # the actions follow the new state
    assert "done" in page.inner_text("#case-result") and _state(stack, case_id) == "registered"
    page.click(".case-do-dispatch")                                     # nobody chosen: said, nothing done
    wait_for(lambda: "choose the member" in page.inner_text("#case-result"), 10, "the missing handler said")
    page.click("#case-handler")
    first = page.locator("[role=option]").first
    chosen = first.inner_text()
    first.click()
    page.click(".case-do-dispatch")
    wait_for(lambda: _state(stack, case_id) == "dispatched", 10, "the case dispatched")
    [(handler,)] = owner_rows(stack, "select handler from cases where case_id = %s", case_id)
    member = city.member_by_terminal[handler]
    assert member.grid_code == grid.code and chosen.startswith(member.name)   # the case's own grid first
    wait_for(lambda: "Dispatch case" in page.inner_text("#case-timeline"), 15, "the timeline refreshed")
    assert member.name in page.inner_text("#case-facts")
    assert owner_rows(stack, "select action, outcome from audit_log where target = %s order by id",
                      f"case:{case_id}") == [("case.register", "done"), ("case.dispatch", "done")]
    assert page.errors == []


def test_a_leader_is_offered_what_a_leader_may_do_and_not_registration(stack, city, dashboard, cases_settings,
                                                                       page):
    case_id = _reported_case(stack, cases_settings, _grid_in(city, 1).code)
    sign_in(page, dashboard.url, "t-leader")
    page.goto(f"{dashboard.url}/case/{case_id}")
    page.wait_for_selector(".case-do-suspend")
    assert page.locator(".case-do-register").count() == 0 and page.locator(".case-do-refuse").count() == 0


def test_a_leader_sees_the_case_list_with_no_console_error(stack, city, dashboard, cases_settings, page):
    """A leader may not enter hotline cases, so the entry form (and its result) is not on the page:
    the list must not depend on it (it did: the table's callback took `cases-new-result` as an
    input, and a leader's list stayed empty with an error in the console)."""
    case_id = _reported_case(stack, cases_settings, _grid_in(city, 1, 2).code)
    console = []
    page.on("console", lambda message: message.type == "error" and console.append(message.text))
    sign_in(page, dashboard.url, "t-leader")
    page.goto(f"{dashboard.url}/cases")
    page.locator("#cases-table tbody tr").first.wait_for(timeout=15000)
    assert page.locator("#cases-new").count() == 0                       # a leader enters no case
    page.fill("#cases-text", case_id)
    page.keyboard.press("Enter")
    wait_for(lambda: page.locator("#cases-table tbody tr").count() == 1, 10, "the leader's search: one case")
    assert case_id in page.inner_text("#cases-rows")
    assert console == [] and page.errors == []


def test_a_street_login_cannot_open_another_streets_case_by_its_number(stack, city, dashboard, cases_settings, page):
    case_id = _reported_case(stack, cases_settings, _grid_in(city, 1).code)
    mine = _reported_case(stack, cases_settings, _grid_in(city, 0, 1).code)
    sign_in(page, dashboard.url, "t-street0-dispatcher")
    page.goto(f"{dashboard.url}/case/{case_id}")
    refused = page.locator("#case-refused")
    refused.wait_for()
    assert "403" in refused.inner_text() and page.locator(".case-do-register").count() == 0
    assert owner_rows(stack, "select outcome from audit_log where actor = 't-street0-dispatcher' and "
                             "action = 'page.open' and target = %s", f"case:{case_id}") == [("refused",)]
    page.goto(f"{dashboard.url}/cases?scope={city.streets[0].code}")
    page.fill("#cases-text", case_id)
    page.keyboard.press("Enter")
    wait_for(lambda: "No case matches" in page.inner_text("#cases-rows"), 10, "not in the street's list")
    page.fill("#cases-text", mine)
    page.keyboard.press("Enter")
    wait_for(lambda: mine in page.inner_text("#cases-rows"), 10, "the street's own case listed")


def test_the_case_list_exports_its_selection_as_csv_and_a_wall_viewer_gets_nothing(stack, city, dashboard,
                                                                                   cases_settings, page):
    case_id = _reported_case(stack, cases_settings, _grid_in(city, 2).code)
    sign_in(page, dashboard.url, "t-dispatcher")
    page.goto(f"{dashboard.url}/cases")
    page.fill("#cases-text", case_id)
    page.keyboard.press("Enter")
    href = wait_for(lambda: (h := page.get_attribute("#cases-export", "href")) and f"text={case_id}" in h and h, 10,
                    "the export link of the selection")
    assert case_id in page.inner_text("#cases-rows") and page.locator("#cases-table tbody tr").count() == 1
    request = urllib.request.Request(dashboard.url + href, headers={"Cookie": session_cookie(dashboard.url,
                                                                                             "t-dispatcher")})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read().decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [r["case_id"] for r in rows] == [case_id] and rows[0]["state"] == "reported"
    assert rows[0]["org_name"] == city.org_name(_grid_in(city, 2).code)
    viewer = urllib.request.Request(dashboard.url + href, headers={"Cookie": session_cookie(dashboard.url,
                                                                                            "t-viewer")})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(viewer, timeout=10)
    assert refused.value.code == 403


def test_a_new_version_of_the_limits_is_what_a_new_case_uses_and_a_calendar_day_is_kept(stack, city, dashboard,
                                                                                        cases_settings, page):
    sign_in(page, dashboard.url, "t-admin")
    page.goto(f"{dashboard.url}/rules")
    page.wait_for_selector("#rules-table")
    before = owner_rows(stack, "select max(version) from time_limits")[0][0]
    for selector, text in (("#rules-category", "Stray animal"), ("#rules-stage", "to handle")):
        page.click(selector)
        page.locator("[role=option]", has_text=text).first.click()
    page.fill("#rules-spec", "3wd")
    page.click("#rules-limits-save")
    wait_for(lambda: f"Version {before + 1}" in page.inner_text("#rules-limits-result"), 10, "the new version",
             explain=lambda: repr(page.inner_text("#rules-limits-result")))
    conn = psycopg2.connect(cases_settings.pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            rules = store.load_rules(cur)
            t = datetime.now(timezone.utc)
            outcome = open_case(store.next_case_id(cur, t), "stray_animal", Urgency.NORMAL, Source.REPORT,
                                _grid_in(city, 0).code, _grid_in(city, 0).code, INTAKE, t, rules)
    finally:
        conn.close()
    assert outcome.case.limits_version == before + 1
    assert rules.table(before + 1).limit("stray_animal", Stage.HANDLE, Urgency.NORMAL) == Limit.parse("3wd")
    assert rules.table(before).limit("stray_animal", Stage.HANDLE, Urgency.NORMAL) != Limit.parse("3wd")
    day = date(2031, 1, 2) + timedelta(days=before)        # a day no other run of this test set
    page.fill("#rules-day", day.isoformat())
    page.fill("#rules-day-name", "local day off")
    page.click("#rules-day-save")
    wait_for(lambda: "Set:" in page.inner_text("#rules-calendar-result"), 10, "the day set")
    assert owner_rows(stack, "select workday, name, source, updated_by from work_calendar where day = %s", day) == \
        [(False, "local day off", "admin", "t-admin")]
    assert owner_rows(stack, "select outcome from audit_log where action = 'calendar.day' and target = %s",
                      f"calendar:{day.isoformat()}") == [("done",)]
    assert page.errors == []

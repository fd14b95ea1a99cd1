"""The case list and a case's page follow the live bus (Chromium), as the wall and the console do:
no poll on either page; a dispatcher watching a case sees its member accept it and start on it
over MQTT (terminal → ingest → cases engine → live bus → hub → page) as soon as the engine has
applied it; a dispatcher watching the list sees a row change state, or leave a filter it no
longer matches, as soon as the command is done. A case page's feed is the case's org unit's,
authorized like the page (a street's login gets none of another street), and carries only which
case changed."""
from __future__ import annotations

import json
import re
import uuid

import orjson
import pytest
from playwright.sync_api import expect

from cases.model import Dispatch, Register
from core.roles import Role, UserRole
from dashboard.authz import Identity
from dashboard.case_actions import CaseAction, CaseRules
from dashboard.commands import Commands
from dashboard.pages import case as case_page
from dashboard.pages import cases as cases_page
from telemetry.topics import CASE, terminal_topic

from ..support import wait_for
from .ingest_helpers import owner_rows
from .screens import SCREENSHOTS, iso, now, session_cookie, sign_in
from .test_case_notices import _reported_case, _terminal
from .test_cases_pages import screens_seeded
from .test_cases_wall import telling_engine
from .test_dashboard_server import WireScreen

pytestmark = pytest.mark.slow
PUSHED_MS = 4000          # the page shows a change this soon after it is stored: a push (the only timer
                          # behind it is the 60 s fallback); a loaded 2-core CI runner gets some margin
DISPATCHER = Identity("t-dispatcher", frozenset({UserRole.DISPATCHER}), "")


@pytest.fixture(scope="module")
def commands(stack, city):
    """The dashboard's own commands (its database role and Redis user), telling the live bus."""
    settings = stack.app_settings("dashboard")
    client = settings.redis_client(socket_timeout=5)
    ctx = Commands(city, client, settings.pg_dsn, producer=f"test-live-{uuid.uuid4().hex[:4]}")
    yield ctx, CaseRules(ctx)
    client.close()


@pytest.fixture(scope="module")
def cases_settings(stack, city):
    return screens_seeded(stack, city)


@pytest.fixture(scope="module")
def engine(stack, city, cases_settings):
    """The cases engine as deployed: it applies the terminals' actions and tells the live bus."""
    with telling_engine(cases_settings, city) as running:
        yield running


def _handler(city, n: int):
    grid = city.grids[n]
    return next(m for m in city.members if m.grid_code == grid.code and m.role is Role.GRID_ADMINISTRATOR)


def _state(stack, case_id: str) -> str:
    return owner_rows(stack, "select state from cases where case_id = %s", case_id)[0][0]


def _timers(page, base_url: str, prefix: str) -> set[str]:
    """The timers (dcc.Interval ids) that trigger a server callback drawing anything of the page
    whose component ids start with `prefix` (as this signed-in browser is given the app)."""
    graph = json.loads(page.request.get(f"{base_url}/_dash-dependencies").text())
    return {i["id"] for c in graph if not c.get("clientside_function")
            and any(part.startswith(prefix) for part in c["output"].replace("...", "..").split(".."))
            for i in c["inputs"] if i["property"] == "n_intervals"}


def _console_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    return errors


def _live(page, feed: str) -> None:
    """Until the page's live feed has its snapshot (the socket is connected and in its room)."""
    page.wait_for_function(f"() => window.gcc && gcc.live && gcc.live.state({feed!r}) !== null", timeout=20000)


def _screenshots(page, name: str) -> None:
    """The page as a wall-sized and as a laptop screen shows it (SCREENSHOTS)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    page.set_viewport_size({"width": 1366, "height": 768})
    page.screenshot(path=str(SCREENSHOTS / f"{name}-laptop.png"))
    page.set_viewport_size({"width": 1920, "height": 1080})


def test_a_dispatcher_watching_a_case_sees_its_member_accept_and_start_it_pushed(stack, city, dashboard,
                                                                              cases_settings, commands, engine,
                                                                              page):
    ctx, rules = commands
    handler = _handler(city, 70)
    case_id = _reported_case(stack, cases_settings, handler.grid_code)
    terminal = _terminal(stack, handler)
    try:
        assert ctx.execute(DISPATCHER, CaseAction(case_id, Register(), rules)).ok
        assert ctx.execute(DISPATCHER, CaseAction(case_id, Dispatch(handler.terminal_id, handler.grid_code),
                                                  rules)).ok
        console = _console_errors(page)
        sign_in(page, dashboard.url, "t-dispatcher")
        page.goto(f"{dashboard.url}/case/{case_id}")
        expect(page.locator("#case-state")).to_have_text("dispatched 已派遣", timeout=15000)
        _live(page, "case")
        for action, shown, event in (("accept", "accepted 已接单", "case-event-accept"),
                                     ("start", "handling 处置中", "case-event-start")):
            assert terminal.publish(terminal_topic(handler.terminal_id, CASE), orjson.dumps(
                {"ts": iso(now()), "case_id": case_id, "action": action})) == "Success"
            wait_for(lambda wanted=shown.split()[0]: _state(stack, case_id) == wanted, 20, f"the case {shown} (engine)")
            expect(page.locator("#case-state")).to_have_text(shown, timeout=PUSHED_MS)
            expect(page.locator(f"#case-timeline .{event}")).to_have_count(1, timeout=PUSHED_MS)
        assert _timers(page, dashboard.url, "case-") == {"case-fallback"}   # no refresh behind the push
        assert case_page.FALLBACK_MS >= 60_000                                   # but a slow fallback
        expect(page.locator("#case-conn")).to_contain_text("live")
        _screenshots(page, "case-live")
        # the clock moves on in the browser between drawings: amber, then red and counting up
        page.evaluate("() => { const el = document.querySelector('#case-left');"
                      " el.dataset.deadline = Date.now() / 1000 + 65; el.dataset.warn = Date.now() / 1000 - 1; }")
        expect(page.locator("#case-left")).to_have_text(re.compile(r"1 min 0\d s"), timeout=PUSHED_MS)
        expect(page.locator("#case-clock")).to_have_class(re.compile(r"\bcase-warn\b"))
        page.evaluate("() => { document.querySelector('#case-left').dataset.deadline = Date.now() / 1000 - 3; }")
        expect(page.locator("#case-left")).to_have_text(re.compile(r"0 min 0\d s overdue 超时"), timeout=PUSHED_MS)
        expect(page.locator("#case-clock")).to_have_class(re.compile(r"\bcase-overdue\b"))
        assert page.errors == [] and console == []
    finally:
        terminal.close()


def test_a_dispatcher_watching_the_list_sees_a_row_change_and_leave_its_filter_pushed(stack, city, dashboard,
                                                                                 cases_settings, commands, page):
    ctx, rules = commands
    handler = _handler(city, 71)
    case_id = _reported_case(stack, cases_settings, handler.grid_code)
    console = _console_errors(page)
    sign_in(page, dashboard.url, "t-dispatcher")
    page.goto(f"{dashboard.url}/cases")
    expect(page.locator("#cases-conn")).to_contain_text("live", timeout=20000)
    expect(page.locator("#cases-table tbody tr").first).to_be_visible(timeout=15000)
    _screenshots(page, "cases-live")
    page.fill("#cases-text", case_id)
    page.keyboard.press("Enter")
    row = page.locator("#cases-table tbody tr")
    expect(row).to_have_count(1, timeout=15000)
    expect(row).to_contain_text("reported")
    _live(page, "cases")
    assert ctx.execute(DISPATCHER, CaseAction(case_id, Register(), rules)).ok
    expect(row).to_contain_text("registered", timeout=PUSHED_MS)
    # a filter on one state: the case leaves the list when it is dispatched
    page.click("#cases-status")
    page.locator("[role=option]", has_text="· registered").first.click()
    expect(row).to_contain_text("registered", timeout=10000)
    assert ctx.execute(DISPATCHER, CaseAction(case_id, Dispatch(handler.terminal_id, handler.grid_code), rules)).ok
    expect(page.locator("#cases-rows")).to_contain_text("No case matches", timeout=PUSHED_MS)
    assert _timers(page, dashboard.url, "cases-") == {"cases-fallback"}  # no refresh behind the push
    assert cases_page.FALLBACK_MS >= 60_000                                 # but a slow fallback
    assert page.errors == [] and console == []


def test_a_case_pages_feed_is_authorized_for_the_cases_org_unit_and_says_only_which_case_changed(
        stack, city, dashboard, cases_settings, commands):
    ctx, rules = commands
    mine, theirs = _handler(city, 0), next(m for m in city.members if not m.grid_code.startswith(city.streets[0].code))
    assert mine.grid_code.startswith(city.streets[0].code)
    cookie = session_cookie(dashboard.url, "t-street0-dispatcher")
    outside = WireScreen(dashboard.port, cookie=cookie)
    outside.join("case", theirs.grid_code)
    assert outside.message("44/live", 10) is not None                  # refused: Socket.IO's CONNECT_ERROR
    outside.close()
    inside = WireScreen(dashboard.port, cookie=cookie)
    try:
        inside.join("case", mine.grid_code)
        assert inside.event("snapshot")["scope"] == mine.grid_code
        case_id = _reported_case(stack, cases_settings, mine.grid_code)
        assert ctx.execute(DISPATCHER, CaseAction(case_id, Register(), rules)).ok
        frame = inside.event("frame", 10)
        while frame is not None and not frame["changes"].get("case"):
            frame = inside.event("frame", 10)
        assert frame is not None and {"key": case_id} in frame["changes"]["case"]
        assert all(set(change) == {"key"} for change in frame["changes"]["case"])   # which case, nothing more
    finally:
        inside.close()

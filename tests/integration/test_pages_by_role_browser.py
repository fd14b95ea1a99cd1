"""Every page of the registry (dashboard.declarations.pages()), as every role that may open it, in
Chromium: it renders its data (rows, markers, figures: what each page shows is declared once, in
SHOWS, keyed by the page's path) with zero browser console errors, no uncaught exception and no
failed callback (/_dash-update-component answering >= 400); a role that may not open it gets the
refusal (403). A page without an entry in SHOWS fails the test, so the next page is covered from
its first day (issue 23, item 6: a leader's case list stayed empty with an error in the console).

The data: a database of its own (kpi_helpers.own_database) with two days of generated history
(cases, their events, the assessment's rollups, patrol fixes), and beside it an open report, a
hotline case, an announcement, an open gas alarm and members standing in a grid (the live state),
as the apps leave them. Each role signs in once; its pages are opened one after another in one
browser context, and every failure of a role is reported together (page, role, what was missing,
the console's errors)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import psycopg2
import pytest

from core.city import CITY_TZ
from core.roles import EVERYONE, UserRole
from dashboard import declarations
from dashboard.announcements import Announce
from dashboard.authz import Identity
from dashboard.case_actions import CaseRules, OpenHotlineCase
from dashboard.commands import Commands
from ingest.live import LiveState
from ingest.model import Enriched
from registry.broker import BrokerAdmin
from registry.store import Actor as RegistryActor
from registry.store import DeviceRegistry
from simulator import history
from telemetry.messages import Fix

from .conftest import demo_city
from .kpi_helpers import own_database
from .screens import TEST_LOGINS, Dashboard, ensure_logins, sign_in
from .test_case_notices import _reported_case
from .test_commands import _open_alarm

pytestmark = pytest.mark.slow
DATABASE = "gcc_pages_by_role"
DATA_MS = 20_000              # a page has this long to draw its data (a hang guard, not a speed assertion)


@dataclass(frozen=True)
class Shows:
    """What proves a page has drawn its data: each of `ready` matches at least one element (a CSS
    selector) or holds (a page function, "() => …"). `url` is the page's address with the seeded
    data filled in ({case}, {member}, {day}); `load` a button to press first (a page that loads
    on demand)."""
    ready: tuple[str, ...]
    url: str = ""
    load: str | None = None


# every page of dashboard.declarations.pages(), by its path: a new page adds its line here
SHOWS: dict[str, Shows] = {
    "/wall": Shows(("() => window.gcc && window.gcc.markers && window.gcc.markers.size > 0",   # members on the map
                    "#wall-queue .queue-row, #wall-queue .ticker-row")),
    "/dispatch": Shows(("#dispatch-queue .queue-row", "#dispatch-alarms .queue-row",
                        "() => Number(document.querySelector('#dispatch-count-online .dispatch-count-value')"
                        ".innerText) > 0")),                                      # the members standing there
    "/cases": Shows(("#cases-table tbody tr",)),
    "/announcements": Shows(("#ann-list .ann-item",)),
    "/kpis": Shows(("#kpis-table tbody tr", "#kpis-cards [id^=kpis-card-]")),
    "/replay": Shows(("#replay-summary > *",), url="/replay?member={member}&day={day}", load="#replay-load"),
    "/audit": Shows(("#audit-table tbody tr",)),
    "/admin": Shows(("#admin-users-table tbody tr", "#admin-tokens-table tbody tr")),
    "/case": Shows(("#case-timeline tbody tr", "#case-facts"), url="/case/{case}"),
    "/rules": Shows(("#rules-table tbody tr",)),
    "/devices": Shows(("#devices-table tbody tr",)),
    "/members": Shows(("#members-table tbody tr",)),
    "/gateways": Shows(("#gateways-table tbody tr",)),
    "/boundaries": Shows(("#boundaries-leaflet canvas.leaflet-zoom-animated", "#boundaries-download li")),
    "/ledger": Shows(("#ledger-legend > span", "#ledger-search")),      # this database holds no ledger rows
    "/ledger/review": Shows(("#review-queue .placeholder, #review-communities li", "#review-detail")),   # none waits
    "/ledger/stats": Shows(("#ledger-stats-tiles .wall-tile", "#ledger-stats-registration .main-svg")),
    "/ledger/map": Shows(("#ledger-map-communities a",)),       # the city's scope: its communities to choose from
}
LOGIN_OF = {role: username for username, (role, scope) in TEST_LOGINS.items() if scope == ""}
PREPARER = Identity("t-pages-seed", EVERYONE, "")


def _seed(stack, dsn: str, r) -> dict[str, str]:
    """What the pages show beside the history: a report, a hotline case (its page), an announcement,
    an open alarm, members standing in a grid; and a member and day whose track replays."""
    city = demo_city()
    grid = city.grids[5]
    _reported_case(stack, SimpleNamespace(pg_dsn=dsn), grid.code)
    commands = Commands(city, None, dsn, producer="test-pages-seed")
    rules = CaseRules(commands)
    opened = commands.execute(PREPARER, OpenHotlineCase("exposed_garbage", "urgent", grid.code, "Garbage at gate 2",
                                                        "Gate 2", rules), "127.0.0.1")
    assert opened.ok, opened.reason
    sent = commands.execute(PREPARER, Announce(grid.code, "Water off Tuesday", "From 9 to 12.", 3), "127.0.0.1")
    assert sent.ok, sent.reason
    phone_of = next(m for m in city.members if m.grid_code == grid.code)          # the devices page lists phones
    DeviceRegistry(dsn, BrokerAdmin.from_settings(stack.app_settings("dashboard"))).add_device(
        RegistryActor(PREPARER.user), phone_of.member_id, "owntracks", f"P-{uuid.uuid4().hex[:8]}", "work phone")
    _open_alarm(SimpleNamespace(pg_dsn=dsn), city, r, next(s for s in city.sensors if s.kind.value == "gas_detector"))
    now = datetime.now(timezone.utc)
    point = grid.boundary.representative_point()
    LiveState(r).apply([Enriched(Fix(terminal_id=m.terminal_id, time=now, lat=point.y, lon=point.x, source="gcc"),
                                 grid.code, member_id=m.member_id, home_grid_code=m.grid_code, received_at=now)
                        for m in city.members if m.grid_code == grid.code])
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:        # the history's latest track: its member and day
            cur.execute("select terminal_id, time from positions order by time desc limit 1")
            terminal_id, at = cur.fetchone()
            cur.execute("insert into wall_tokens (name, scope_code, token_hash, created_by) "
                        "values ('Hall screen', '', %s, 'tests')", (uuid.uuid4().hex,))
    finally:
        conn.close()
    return {"case": opened.reply, "member": terminal_id, "day": at.astimezone(CITY_TZ).date().isoformat()}


@pytest.fixture(scope="module")
def board(stack, city, settings, tmp_path_factory):
    """A dashboard of its own on the history's database (the session's live state in Redis)."""
    r = settings.redis_client()
    with own_database(stack, DATABASE) as dsn:
        history.generate(dsn, history.Plan(days=2, seed=11, cases_per_grid_day=0.3, fix_every_s=900, patrol_min=10,
                                           alarms_per_sensor_day=0.001, end=datetime.now(timezone.utc)),
                         progress=False)
        ensure_logins(dsn)
        seeded = _seed(stack, dsn, r)
        dashboard = Dashboard(stack, tmp_path_factory.mktemp("pages") / "dashboard.log")
        dashboard.env["GCC_PG_DATABASE"] = DATABASE
        dashboard.start()
        try:
            yield dashboard, seeded
        finally:
            dashboard.stop()
            r.close()


class Console:
    """What the browser said went wrong: console errors, uncaught exceptions, failed callbacks."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e.message} at {_frame(e.stack)}"))
        page.on("response", self._response)

    def _response(self, response) -> None:
        if "/_dash-update-component" in response.url and response.status >= 400:
            self.errors.append(f"callback HTTP {response.status}: {(response.request.post_data or '')[:300]}")

    def take(self) -> list[str]:
        """The errors since the last take, each once (its first line), with how often it came."""
        said: dict[str, int] = {}
        for error in self.errors:
            line = error.splitlines()[0][:400]
            said[line] = said.get(line, 0) + 1
        self.errors.clear()
        return [line if n == 1 else f"{line} (×{n})" for line, n in said.items()]


def _frame(stack: str | None) -> str:
    """Where an uncaught exception was thrown (its stack's first frame)."""
    frames = [line.strip()[3:] for line in (stack or "").splitlines() if line.strip().startswith("at ")]
    return frames[0] if frames else "?"


def _settled(page) -> None:
    """Until no Dash callback is running (Dash marks the components it is updating)."""
    page.wait_for_function("() => document.querySelector('#shell') && "
                           "!document.querySelector('[data-dash-is-loading=\"true\"]')", timeout=DATA_MS)


def _drawn(page, ready: str) -> None:
    if ready.startswith("() =>"):
        page.wait_for_function(ready, timeout=DATA_MS)
    else:
        page.locator(ready).first.wait_for(state="attached", timeout=DATA_MS)


def _open(page, base: str, path: str, shows: Shows, seeded: dict[str, str]) -> str | None:
    """The page opened with its data drawn: None, or what was missing."""
    page.goto(base + (shows.url or path).format(**seeded))
    page.locator("#shell-page").wait_for(timeout=DATA_MS)
    if page.locator("#shell-refusal").count():
        return f"refused: {page.inner_text('#shell-refusal')}"
    try:
        if shows.load:
            page.locator(shows.load).click(timeout=DATA_MS)
        for ready in shows.ready:
            try:
                _drawn(page, ready)
            except Exception:      # noqa: BLE001 — Playwright's timeout: the data is not there
                return f"no {ready} within {DATA_MS / 1000:.0f} s"
        _settled(page)
    except Exception as exc:       # noqa: BLE001
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


def test_every_declared_page_says_what_shows_its_data():
    declared = {p.path for p in declarations.pages()}
    assert declared - SHOWS.keys() == set(), "a page without an entry in SHOWS (what proves it drew its data)"
    assert SHOWS.keys() - declared == set(), "SHOWS names a page that is not declared"


@pytest.mark.parametrize("role", [r.value for r in UserRole])
def test_every_page_a_role_may_open_shows_its_data_without_a_console_error(board, browser, role):
    dashboard, seeded = board
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    console = Console(page)
    failures = []
    try:
        sign_in(page, dashboard.url, LOGIN_OF[role])
        console.take()
        for declared in declarations.pages():
            shows = SHOWS[declared.path]
            if UserRole(role) in declared.roles:
                missing = _open(page, dashboard.url, declared.path, shows, seeded)
                errors = console.take()
                if missing or errors:
                    failures.append(f"{declared.path} as {role}: {missing or 'data shown'}; errors: {errors}")
            else:
                page.goto(dashboard.url + (shows.url or declared.path).format(**seeded))
                refusal = page.locator("#shell-refusal")
                try:
                    refusal.wait_for(timeout=DATA_MS)
                    refused = "403" in refusal.inner_text()
                except Exception:  # noqa: BLE001
                    refused = False
                errors = console.take()
                if not refused or errors:
                    failures.append(f"{declared.path} as {role}: {'refused' if refused else 'NOT refused'}; "
                                    f"errors: {errors}")
    finally:
        context.close()
    assert failures == [], "\n".join(failures)


def test_the_seed_is_what_the_pages_are_asked_for(board):
    """The case and the track the table's URLs name exist (else a page would be asked for nothing)."""
    _, seeded = board
    assert seeded["case"].startswith("C") and seeded["member"] in demo_city().member_by_terminal
    assert datetime.fromisoformat(seeded["day"]).date() >= (datetime.now(CITY_TZ) - timedelta(days=3)).date()


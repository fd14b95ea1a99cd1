"""The members' handheld (网格通) end to end, in headless Chromium as a phone (360×640, touch, zh-CN,
its geolocation set inside the member's grid), against the real processes: the device-facing
service (the app, its API and the ingest chain), the handheld bridge, the cases engine and the
dashboard. (a) A report with two photos made with the network off waits in the app's outbox and,
once the network is back, reaches the dispatcher's queue exactly once with both photos, which the
case page shows. (b) A dispatcher's offer reaches the phone; the member accepts, patrols (fixes from
the phone's position), goes on scene and sends feedback with an after-photo; the grid's supervisor
verifies on a second phone; the dispatcher closes: each step checked in the database. (c) An SOS
held on the phone shows on the wall within 2 s. (d) A phone retired while the app is open is
refused at its next request, and the app says so on its sign-in screen."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import psycopg2
import pytest

from cases import store
from cases.intake import INTAKE
from cases.limits import Urgency
from cases.machine import open_case
from cases.model import Close, Dispatch, Register, Source
from core.roles import Role, UserRole
from dashboard.authz import Identity
from dashboard.case_actions import CaseAction, CaseRules
from dashboard.commands import Commands

from ..support import wait_for
from .handheld_browser import (  # noqa: F401 - the *_fixture names: the fixtures these tests use
    ADMIN,
    PIN,
    WAIT_MS,
    bridge_fixture,
    casework_fixture,
    jpeg_file,
    phone_service_fixture,
    phones_fixture,
    registry_fixture,
)
from .ingest_helpers import owner_rows
from .screens import ensure_logins, ensure_signed_in, sign_in, wait_wall_connection
from .test_cases_engine import seeded

pytestmark = pytest.mark.slow
DB_WAIT_S = 30.0
WALL = "(window.gcc && window.gcc.live && window.gcc.live.state('wall'))"


def member_of(city, grid_index: int, role: Role):
    grid = city.grids[grid_index]
    return next(m for m in city.members if m.grid_code == grid.code and m.role is role)


def street_of(member) -> str:
    return member.grid_code[:9]


def dispatcher_of(stack, member) -> str:
    """A dispatcher login scoped to the member's street (created once)."""
    username = f"t-hh-disp-{street_of(member)}"
    ensure_logins(stack.settings().pg_dsn, {username: ("dispatcher", street_of(member))})
    return username


def state_of(stack, case_id: str) -> str | None:
    rows = owner_rows(stack, "select state from cases where case_id = %s", case_id)
    return rows[0][0] if rows else None


def wait_state(stack, case_id: str, state: str, what: str) -> None:
    wait_for(lambda: state_of(stack, case_id) == state, DB_WAIT_S, what,
             explain=lambda: f"(state {state_of(stack, case_id)})")


# --- (a) ----------------------------------------------------------------------------------------------
def test_a_report_with_two_photos_made_offline_reaches_the_queue_once_and_the_case_page_shows_them(
        stack, city, casework, dashboard, phones, registry, page, tmp_path):
    reporter = member_of(city, 101, Role.GRID_ADMINISTRATOR)
    seeded(stack)
    phone = phones(reporter, city)
    phone.enrol(registry)
    photos = [jpeg_file(tmp_path, f"photo-{n}.jpg", colour) for n, colour in enumerate(((190, 40, 40), (40, 160, 60)))]
    description = f"路面破损 offline {uuid.uuid4().hex[:8]}"

    phone.context.set_offline(True)                 # in a basement: the app was loaded and signed in
    phone.page.locator("#link.off").wait_for(timeout=WAIT_MS)
    phone.go("report")
    form = phone.page
    form.locator("button.category[data-key=damaged_road]").tap()
    form.locator(".choices.severity button[data-value='3']").tap()
    form.locator("input.file-input").set_input_files([str(p) for p in photos])
    form.locator(".picker .thumbs img").nth(1).wait_for(timeout=WAIT_MS)
    form.locator(".place", has_text="GPS").wait_for(timeout=WAIT_MS)     # the place from the phone's position
    form.fill("textarea[name=description]", description)
    phone.shot("a-1-report-offline")
    form.locator("button.btn.primary.wide", has_text="Send report").tap()

    bar = form.locator("#outbox-bar")
    bar.get_by_text("3 waiting to send").wait_for(timeout=WAIT_MS)       # 2 photos and the report
    assert "3 条待发送" in bar.inner_text()
    assert phone.stored("outbox") == 3
    phone.shot("a-2-waiting")
    assert owner_rows(stack, "select count(*) from incident_reports where terminal_id = %s and description = %s",
                      reporter.terminal_id, description) == [(0,)]       # nothing left the phone

    phone.context.set_offline(False)                # signal again: the outbox sends in order, once
    bar.wait_for(state="hidden", timeout=WAIT_MS)
    assert (phone.stored("outbox"), phone.stored("refused")) == (0, 0)      # all sent, nothing refused
    phone.shot("a-3-sent")

    def stored():
        return owner_rows(stack, "select report_id, photo_refs from incident_reports where terminal_id = %s and "
                                 "description = %s", reporter.terminal_id, description)
    [(report_id, refs)] = wait_for(stored, DB_WAIT_S, "the report stored")
    assert len(refs) == 2 and all(r.startswith("sha256:") for r in refs)
    hexes = [r.removeprefix("sha256:") for r in refs]
    assert owner_rows(stack, "select count(*) from photos where ref = any(%s) and device_id = %s", refs,
                      phone.device_id) == [(2,)]

    def case_of():
        return owner_rows(stack, "select case_id from case_sources where kind = 'report' and key = %s",
                          f"{reporter.terminal_id}/{report_id}")
    [(case_id,)] = wait_for(case_of, DB_WAIT_S, "the report to become a case in the dispatcher's queue")
    assert state_of(stack, case_id) == "reported"
    assert owner_rows(stack, "select count(*) from incident_reports where terminal_id = %s and description = %s",
                      reporter.terminal_id, description) == [(1,)]       # exactly once
    assert owner_rows(stack, "select count(*) from case_sources where key = %s",
                      f"{reporter.terminal_id}/{report_id}") == [(1,)]

    sign_in(page, dashboard.url, dispatcher_of(stack, reporter))
    page.goto(f"{dashboard.url}/case/{case_id}")
    thumbs = page.locator("#case-photos img.photo-thumb")
    thumbs.nth(1).wait_for(timeout=WAIT_MS)
    assert thumbs.count() == 2
    page.wait_for_function("() => [...document.querySelectorAll('#case-photos img.photo-thumb')]"
                           ".every(i => i.complete && i.naturalWidth > 0)", timeout=WAIT_MS)
    links = [page.locator("#case-photos a.photo-link").nth(k).get_attribute("href") for k in range(2)]
    assert sorted(links) == sorted(f"/photos/{h}" for h in hexes)
    page.screenshot(path=str(phone.shot("a-4-phone-after").parent / "a-5-case-page.png"))
    assert phone.page.errors == [] and page.errors == []


# --- (b) ----------------------------------------------------------------------------------------------
def _open_case(stack, city, member) -> str:
    """A reported case in the member's grid, at a point inside it, as the intake opens a report's."""
    settings = seeded(stack)
    inside = city.grid_by_code[member.grid_code].boundary.representative_point()
    conn = psycopg2.connect(settings.pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            rules = store.load_rules(cur)
            now = datetime.now(timezone.utc)
            case_id = store.next_case_id(cur, now)
            outcome = open_case(case_id, "exposed_garbage", Urgency.NORMAL, Source.REPORT, member.grid_code,
                                member.grid_code, INTAKE, now, rules, title="暴露垃圾 Exposed garbage",
                                place="3号楼东侧 East of Building 3", lat=inside.y, lon=inside.x)
            store.insert(cur, outcome.case, rules)
            store.add_events(cur, outcome.events)
    finally:
        conn.close()
    return case_id


def _acked(stack, device_id: str, case_id: str, kind: str) -> bool:
    """The phone took the case's notice of `kind` from its outbox (the stream) and acknowledged it."""
    return owner_rows(stack, "select count(*) from handheld_outbox where device_id = %s and kind = 'notice' and "
                             "body->>'case_id' = %s and body->>'kind' = %s and acked_at is not null",
                      device_id, case_id, kind) == [(1,)]


def _reopen(phone, route: str) -> None:
    """The member taps away and back: the screen reads the server again."""
    phone.go("more" if route != "more" else "today")
    phone.go(route)


def test_an_offer_is_accepted_handled_verified_on_a_second_phone_and_closed(stack, city, casework, bridge, phones,
                                                                             registry, tmp_path):
    handler = member_of(city, 113, Role.GRID_ADMINISTRATOR)
    verifier = member_of(city, 113, Role.GRID_SUPERVISOR)
    settings = stack.app_settings("dashboard")           # the screens' command path, as the dashboard's role
    client = settings.redis_client(socket_timeout=5)
    ctx = Commands(city, client, settings.pg_dsn, producer="t-hh-browser")
    rules = CaseRules(ctx)
    dispatcher = Identity(dispatcher_of(stack, handler), frozenset({UserRole.DISPATCHER}), street_of(handler))
    phone, second = phones(handler, city), phones(verifier, city)
    phone.enrol(registry)
    second.enrol(registry)
    try:
        # 1. the dispatcher registers a report's case and offers it to the member
        case_id = _open_case(stack, city, handler)
        assert ctx.execute(dispatcher, CaseAction(case_id, Register(), rules)).ok
        result = ctx.execute(dispatcher, CaseAction(case_id, Dispatch(handler.terminal_id, handler.grid_code), rules))
        assert result.ok, result.reason
        assert state_of(stack, case_id) == "dispatched"
        # the notice: the engine publishes it, the bridge writes it to the phone's outbox, the open app
        # takes it from its stream and acknowledges it, and its Tasks tab shows it
        wait_for(lambda: _acked(stack, phone.device_id, case_id, "dispatched"), DB_WAIT_S,
                 "the phone to take the offer's notice from its stream")
        phone.page.locator("#badge-tasks:not([hidden])").wait_for(timeout=WAIT_MS)
        phone.shot("b-01-offer-arrived")
        phone.go("tasks")
        card = phone.page.locator(f"article.case-card[data-case-id='{case_id}']")
        card.locator(".deadline .bi").first.wait_for(timeout=WAIT_MS)      # the offer's countdown
        phone.shot("b-02-offer")

        # 2. the member accepts
        card.locator("button", has_text="Accept").tap()
        wait_state(stack, case_id, "accepted", "the phone's acceptance through the ingest and the engine")
        phone.shot("b-03-accepted")

        # 3. on patrol: the app sends fixes from the phone's position while on patrol
        started = datetime.now(timezone.utc)
        phone.go("today")
        phone.page.locator("button", has_text="Start patrol").tap()
        phone.page.locator(".patrol .notice.ok").wait_for(timeout=WAIT_MS)
        inside = city.grid_by_code[handler.grid_code].boundary.representative_point()

        def fixes():
            return owner_rows(stack, "select lon, lat from positions where terminal_id = %s and received_at >= %s",
                              handler.terminal_id, started)
        [(lon, lat), *_] = wait_for(fixes, DB_WAIT_S, "a fix from the phone on patrol")
        assert abs(lon - inside.x) < 1e-6 and abs(lat - inside.y) < 1e-6       # the phone's own position
        phone.shot("b-04-patrol")

        # 4. on scene
        _reopen(phone, "tasks")
        card.locator("button", has_text="On scene").tap()
        wait_state(stack, case_id, "handling", "the member on scene")
        phone.shot("b-05-on-scene")

        # 5. handled: a note and an after-photo
        _reopen(phone, "tasks")
        card.locator("button", has_text="Handled").tap()
        answer = card.locator(".answer")
        answer.locator("textarea").fill("垃圾已清运 cleared and swept")
        answer.locator("input.file-input").set_input_files(str(jpeg_file(tmp_path, "after.jpg", (60, 90, 200))))
        answer.locator(".thumbs img").first.wait_for(timeout=WAIT_MS)
        phone.shot("b-06-feedback", focus=answer.locator(".thumbs"))
        answer.locator("button.btn.primary", has_text="Send").tap()
        wait_state(stack, case_id, "handled", "the member's feedback")
        [(note, refs)] = owner_rows(stack, "select detail->>'note', detail->'photo_refs' from case_events where "
                                           "case_id = %s and command = 'feedback'", case_id)
        assert note == "垃圾已清运 cleared and swept" and len(refs) == 1
        assert owner_rows(stack, "select device_id from photos where ref = %s", refs[0]) == [(phone.device_id,)]
        phone.shot("b-07-handled")

        # 6. the grid's supervisor, on a second phone, is told and verifies with a photo: pass
        wait_for(lambda: _acked(stack, second.device_id, case_id, "verify"), DB_WAIT_S,
                 "the supervisor's phone to take the verify notice")
        second.page.locator("#badge-verify:not([hidden])").wait_for(timeout=WAIT_MS)
        second.go("verify")
        to_verify = second.page.locator(f"article.case-card[data-case-id='{case_id}']")
        to_verify.locator("button", has_text="Pass").tap()
        check = to_verify.locator(".answer")
        check.locator("input.file-input").set_input_files(str(jpeg_file(tmp_path, "check.jpg", (220, 200, 40))))
        check.locator(".thumbs img").first.wait_for(timeout=WAIT_MS)
        second.shot("b-08-verify", focus=check.locator(".thumbs"))
        check.locator("button.btn.primary", has_text="Send").tap()
        wait_state(stack, case_id, "verified", "the supervisor's verification")
        assert owner_rows(stack, "select actor_kind, actor, detail->>'passed' from case_events where case_id = %s and "
                                 "command = 'verify'", case_id) == [("terminal", verifier.terminal_id, "true")]
        second.shot("b-09-verified")

        # 7. the dispatcher closes; the member's phone is told
        assert ctx.execute(dispatcher, CaseAction(case_id, Close(), rules)).ok
        assert state_of(stack, case_id) == "closed"
        wait_for(lambda: _acked(stack, phone.device_id, case_id, "closed"), DB_WAIT_S,
                 "the member's phone to take the closed notice")
        _reopen(phone, "tasks")
        phone.page.locator(".notice", has_text="Closed").first.wait_for(timeout=WAIT_MS)
        phone.shot("b-10-closed")
        events = [c for (c,) in owner_rows(stack, "select command from case_events where case_id = %s order by id",
                                           case_id)]
        assert events == ["open", "register", "dispatch", "accept", "start", "feedback", "verify", "close"]
        assert owner_rows(stack, "select actor from case_events where case_id = %s and command in ('accept', 'start', "
                                 "'feedback') group by actor", case_id) == [(handler.terminal_id,)]
        assert phone.page.errors == [] and second.page.errors == []
    finally:
        client.close()


# --- (c) ----------------------------------------------------------------------------------------------
def test_an_sos_held_on_the_phone_shows_on_the_wall_within_two_seconds(stack, city, casework, dashboard, phones,
                                                                      registry, page, record_property):
    member = member_of(city, 127, Role.GRID_COORDINATOR)
    phone = phones(member, city)
    phone.enrol(registry)
    ensure_signed_in(page, dashboard.url)
    page.goto(f"{dashboard.url}/wall?scope={street_of(member)}")
    page.wait_for_function(f"() => {{ const st = {WALL}; return st && st.scope !== null; }}", timeout=WAIT_MS)
    wait_wall_connection(page)
    phone.go("sos")
    button = phone.page.locator(".sos-button")
    box = button.bounding_box()
    phone.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    phone.page.mouse.down()
    phone.page.locator(".sos-button.holding").wait_for(timeout=WAIT_MS)
    phone.page.locator(".sos-button:not(.holding)").wait_for(timeout=WAIT_MS)   # held long enough: confirmed
    phone.page.mouse.up()
    released = time.monotonic()
    row = page.locator(".case-row.sos", has_text=member.name)
    row.wait_for(timeout=WAIT_MS)
    shown = time.monotonic() - released
    record_property("sos_release_to_wall_s", round(shown, 3))
    # the issue's own requirement ("SOS from the phone shows on the wall within 2 s"): the one timed
    # assertion of these tests, kept on purpose
    assert shown < 2.0, f"the SOS took {shown:.2f} s from the release to the wall"
    phone.page.locator(".sos-after .notice.danger").wait_for(timeout=WAIT_MS)
    phone.shot("c-1-sos-sent")
    page.screenshot(path=str(phone.shot("c-0-phone").parent / "c-2-wall.png"))
    assert owner_rows(stack, "select count(*) from terminal_status where terminal_id = %s and sos",
                      member.terminal_id) == [(1,)]
    assert owner_rows(stack, "select source, urgency, state from cases where source_key = %s",
                      f"sos:{member.terminal_id}") == [("sos", "urgent", "registered")]
    assert phone.page.errors == []


# --- (d) ----------------------------------------------------------------------------------------------
def test_a_phone_retired_while_the_app_is_open_is_refused_at_its_next_request(stack, city, phone_service, phones,
                                                                             registry):
    member = member_of(city, 133, Role.GRID_POLICE_OFFICER)
    phone = phones(member, city)
    device_id = phone.enrol(registry)
    phone.go("tasks")
    phone.page.locator("h2.screen-title", has_text="My tasks").wait_for(timeout=WAIT_MS)
    asked = []                                               # the app's API requests made after the retirement
    registry.retire_device(ADMIN, device_id)                 # an admin, on the Members' phones page
    phone.page.on("request", lambda r: asked.append(r) if "/handheld/api/v1/" in r.url else None)
    phone.page.evaluate("() => { location.hash = 'verify'; }")   # the member's next tap: GET /verify
    revoked = phone.page.locator(".signin .notice.danger")
    revoked.wait_for(timeout=WAIT_MS)
    answered = [(r.response().status if r.response() else None, r.url) for r in asked]
    assert answered and answered[0][0] == 403, answered       # its very next request: refused
    assert all(status in (401, 403, None) for status, _ in answered), answered
    assert "本手机已被停用" in revoked.inner_text() and "revoked" in revoked.inner_text()
    assert phone.page.evaluate("() => document.body.classList.contains('signed-out')")
    phone.shot("d-1-revoked")
    # the PIN no longer opens it: the server refuses the phone itself
    phone.page.fill("input[name=pin]", PIN)
    phone.page.locator("form button[type=submit]").tap()
    phone.page.locator(".signin p.error", has_text="本手机已被停用").wait_for(timeout=WAIT_MS)
    phone.shot("d-2-pin-refused")
    assert phone.page.evaluate("async () => (await import('./js/db.js')).kv.get('session')") is None
    assert phone.page.errors == []

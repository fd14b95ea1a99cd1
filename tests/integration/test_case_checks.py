"""Emergency verification (紧急核实) end to end against the real stack: a dispatcher asks a member to
check an SOS's or an alarm's case (the screens' command path, as the dashboard's own database role),
the member's terminal gets a `check` notice saying what to check, the member's phone answers through
the device-facing HTTP service and the ingest chain (alarm/check, with a photo), and the cases
engine records the answer on the case (a `check` event with outcome, note and photo refs) — or
refuses and audits an answer nobody asked for; a dispatcher of another street cannot ask. In
Chromium, the case page and the dispatcher console show the answer with its photo and offer the
request with the nearest member preselected."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import orjson
import psycopg2
import pytest

from cases.model import RequestCheck
from cases.reads import CaseReads
from core.orgcodes import Scope
from core.roles import Role, UserRole
from dashboard.authz import Identity
from dashboard.case_actions import CaseRules
from dashboard.case_checks import RequestCaseCheck
from dashboard.commands import Commands
from registry.broker import BrokerAdmin
from registry.store import Actor, DeviceRegistry

from .ingest_helpers import HttpService, owner_rows
from .screens import ensure_logins, sign_in
from .test_cases_engine import _engine, _once, seeded
from .test_handheld_api import API, call, jpeg

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cases_settings(stack, city):
    settings = seeded(stack)
    owner = psycopg2.connect(stack.settings().pg_dsn)
    try:
        with owner, owner.cursor() as cur:
            cur.execute("delete from case_inbox")     # what earlier tests stored is not this module's business
    finally:
        owner.close()
    return settings


@pytest.fixture(scope="module")
def commands(stack, city):
    settings = stack.app_settings("dashboard")        # the dashboard's own role and Redis user: its grants
    client = settings.redis_client(socket_timeout=5)
    ctx = Commands(city, client, settings.pg_dsn, producer="test-case-checks")
    yield ctx, CaseRules(ctx)
    client.close()


@pytest.fixture(scope="module")
def service(stack, city, tmp_path_factory):
    with HttpService(stack, tmp_path_factory.mktemp("case-checks") / "ingest-http.log") as running:
        yield running


@pytest.fixture(scope="module")
def registry(stack):
    settings = stack.app_settings("dashboard")
    return DeviceRegistry(settings.pg_dsn, BrokerAdmin.from_settings(settings))


def _signed_in(service, registry, member) -> str:
    """A phone of `member`, enrolled and signed in: its session token."""
    enrolment = registry.enrol_handheld(Actor("t-case-checks"), member.member_id, "checker's phone")
    status, enrolled, _ = call(service.port, "POST", f"{API}/enrol",
                               orjson.dumps({"code": enrolment.code, "pin": "246810"}))
    assert status == 201, enrolled
    status, session, _ = call(service.port, "POST", f"{API}/session", orjson.dumps(
        {"device_id": enrolled["device_id"], "device_secret": enrolled["device_secret"], "pin": "246810"}))
    assert status == 200, session
    return session["token"]


def _grid_with_two(city, n: int, street: str = ""):
    """A grid's member (who raises the SOS) and another of its members who handles cases (who checks)."""
    grids = sorted({m.grid_code for m in city.members if m.grid_code.startswith(street)})
    grid = grids[n % len(grids)]
    members = [m for m in city.members if m.grid_code == grid]
    checker = next(m for m in members if m.role in (Role.GRID_ADMINISTRATOR, Role.GRID_COORDINATOR))
    return next(m for m in members if m is not checker), checker


def _owner(stack, sql: str, *args) -> None:
    conn = psycopg2.connect(stack.settings().pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, args)
    finally:
        conn.close()


def _answer(service, token: str, **body) -> None:
    at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    status, answer, _ = call(service.port, "POST", f"{API}/messages/alarm/check",
                             orjson.dumps({"ts": at, **body}), token)
    assert (status, answer) == (200, {"stored": True})       # stored (and in the engine's inbox) before the 200


def _events(stack, case_id: str) -> list[tuple]:
    return owner_rows(stack, "select command, actor_kind, actor, detail from case_events where case_id = %s "
                             "order by id", case_id)


def _sos(stack, city, cases_settings, in_sos, fix_at: datetime):
    """`in_sos` raises an SOS after a fix at `fix_at`: the engine (returned) opens its case (its number)."""
    spot = city.grid_by_code[in_sos.grid_code].boundary.representative_point()
    _owner(stack, "insert into positions (time, terminal_id, member_id, grid_code, lat, lon, source) "
                  "values (%s, %s, %s, %s, %s, %s, 'gcc')", fix_at, in_sos.terminal_id, in_sos.member_id,
           in_sos.grid_code, spot.y, spot.x)
    _owner(stack, "insert into terminal_status (time, terminal_id, state, sos, grid_code) values (now(), %s, 'online', "
                  "true, %s)", in_sos.terminal_id, in_sos.grid_code)
    engine = _engine(cases_settings, city, scale=1.0)
    _once(engine, cases_settings)
    [(case_id,)] = owner_rows(stack, "select case_id from cases where source_key = %s and state <> 'closed'",
                              f"sos:{in_sos.terminal_id}")
    return engine, case_id, spot


def test_an_sos_checked_by_a_neighbour_s_phone_is_on_the_case_with_its_outcome_and_photo(
        stack, city, cases_settings, commands, service, registry):
    ctx, rules = commands
    in_sos, checker = _grid_with_two(city, 11)
    street = Identity("disp-check-street", frozenset({UserRole.DISPATCHER}), in_sos.grid_code[:9])
    far_member = next(m for m in city.members if m.grid_code[:9] != in_sos.grid_code[:9])
    far = Identity("disp-check-far", frozenset({UserRole.DISPATCHER}), far_member.grid_code[:9])
    fix_at = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=30)
    engine, case_id, spot = _sos(stack, city, cases_settings, in_sos, fix_at)

    # another street's dispatcher may not ask; nobody is asked to check their own SOS
    refused = ctx.execute(far, RequestCaseCheck(case_id, RequestCheck(far_member.terminal_id), rules))
    assert not refused.ok and "outside" in refused.reason
    own = ctx.execute(street, RequestCaseCheck(case_id, RequestCheck(in_sos.terminal_id), rules))
    assert not own.ok and "raised the SOS" in own.reason
    assert owner_rows(stack, "select actor, outcome from audit_log where target = %s and action = 'case.request_check' "
                             "order by id", f"case:{case_id}") == [(far.user, "refused"), (street.user, "refused")]
    assert owner_rows(stack, "select count(*) from case_notices where case_id = %s and kind = 'check'",
                      case_id) == [(0,)]

    asked = ctx.execute(street, RequestCaseCheck(case_id, RequestCheck(checker.terminal_id, reason="no answer"),
                                                 rules))
    assert asked.ok, asked.reason
    [(terminal_id, body)] = owner_rows(stack, "select terminal_id, body from case_notices where case_id = %s "
                                              "and kind = 'check'", case_id)
    assert terminal_id == checker.terminal_id
    assert (body["kind"], body["case_id"], body["sos_terminal_id"], body["sos_name"], body["reason"]) == \
        ("check", case_id, in_sos.terminal_id, in_sos.name, "no answer")
    assert (body["sos_lat"], body["sos_lon"], datetime.fromisoformat(body["sos_at"])) == (spot.y, spot.x, fix_at)
    assert body["place"] and "sensor_id" not in body
    again = ctx.execute(street, RequestCaseCheck(case_id, RequestCheck(checker.terminal_id), rules))
    assert not again.ok and "asked already" in again.reason

    token = _signed_in(service, registry, checker)
    status, uploaded, _ = call(service.port, "POST", f"{API}/photos", jpeg((90, 20, 160)), token, "image/jpeg")
    assert status == 201, uploaded
    _answer(service, token, case_id=case_id, outcome="need_help", note="他摔倒了，需要救护车",
            photo_refs=[uploaded["ref"]])
    _once(engine, cases_settings)
    command, actor_kind, actor, detail = _events(stack, case_id)[-1]
    assert (command, actor_kind, actor) == ("check", "terminal", checker.terminal_id)
    assert (detail["outcome"], detail["note"], detail["photo_refs"]) == \
        ("need_help", "他摔倒了，需要救护车", [uploaded["ref"]])
    assert owner_rows(stack, "select urgency, acknowledged_by, checkers from cases where case_id = %s",
                      case_id) == [("urgent", None, [])]
    reads = CaseReads(city, stack.app_settings("dashboard").pg_dsn)
    assert [(p["ref"], p["stage"]) for p in reads.case_photos(case_id)] == [(uploaded["ref"], "check")]
    street_scope, far_scope = Scope(street.scope_code, ""), Scope(far.scope_code, "")
    assert reads.photo(street_scope, uploaded["ref"], thumb=True)          # the case's street sees the photo
    assert reads.photo(far_scope, uploaded["ref"]) is None                 # another street does not

    # answered once: a second answer is refused, audited, and changes nothing
    _answer(service, token, case_id=case_id, outcome="false_alarm")
    _once(engine, cases_settings)
    assert [e[0] for e in _events(stack, case_id)].count("check") == 1
    [(reason,)] = owner_rows(stack, "select reason from audit_log where target = %s and action = 'case.check' "
                                    "and outcome = 'refused'", f"case:{case_id}")
    assert "was not asked" in reason


def test_an_alarm_s_case_is_checked_with_the_alarm_check_the_devices_already_send(
        stack, city, cases_settings, commands, service, registry):
    ctx, rules = commands
    _, checker = _grid_with_two(city, 23)
    sensor = next(s for s in city.sensors if s.grid_code == checker.grid_code)
    alarm_id = f"GAS-{uuid.uuid4().hex[:8]}"
    _owner(stack, "insert into device_alarms (time, alarm_id, sensor_id, alarm_type, severity, state, building_id, "
                  "grid_code) values (now(), %s, %s, 'gas_over_threshold', 4, 'raised', %s, %s)",
           alarm_id, sensor.sensor_id, sensor.building_id, sensor.grid_code)
    engine = _engine(cases_settings, city, scale=1.0)
    _once(engine, cases_settings)
    [(case_id,)] = owner_rows(stack, "select case_id from case_sources where kind = 'alarm' and key = %s",
                              f"{sensor.sensor_id}/{alarm_id}/raised")
    city_dispatcher = Identity("disp-check-city", frozenset({UserRole.DISPATCHER}), "")
    assert ctx.execute(city_dispatcher, RequestCaseCheck(case_id, RequestCheck(checker.terminal_id), rules)).ok
    [(body,)] = owner_rows(stack, "select body from case_notices where case_id = %s and kind = 'check' "
                                  "and terminal_id = %s", case_id, checker.terminal_id)
    assert (body["sensor_id"], body["alarm_id"]) == (sensor.sensor_id, alarm_id)

    token = _signed_in(service, registry, checker)
    _answer(service, token, sensor_id=sensor.sensor_id, alarm_id=alarm_id, outcome="false_alarm",
            note="steam from a kettle")                   # as before: no case_id, the alarm names it
    _once(engine, cases_settings)
    command, _, actor, detail = _events(stack, case_id)[-1]
    assert (command, actor, detail["outcome"], detail["sensor_id"], detail["alarm_id"]) == \
        ("check", checker.terminal_id, "false_alarm", sensor.sensor_id, alarm_id)
    assert owner_rows(stack, "select case_id, outcome from alarm_checks where terminal_id = %s and alarm_id = %s",
                      checker.terminal_id, alarm_id) == [(None, "false_alarm")]


def test_a_check_naming_neither_a_case_nor_a_whole_alarm_is_refused_with_the_field_named(service, registry, city):
    _, checker = _grid_with_two(city, 37)
    token = _signed_in(service, registry, checker)
    status, refused, _ = call(service.port, "POST", f"{API}/messages/alarm/check", orjson.dumps(
        {"ts": datetime.now(timezone.utc).isoformat(), "sensor_id": "gas-1", "outcome": "confirmed"}), token)
    assert status == 400 and refused["error"] == "schema_violation"
    assert "both sensor_id and alarm_id" in refused["detail"]


def test_the_case_page_and_the_console_show_the_answer_with_its_photo_and_offer_the_request(
        stack, city, cases_settings, commands, service, registry, dashboard, page):
    ctx, rules = commands
    street = city.streets[0].code
    ensure_logins(stack.settings().pg_dsn, {"t-check-dispatcher": ("dispatcher", street)})
    in_sos, checker = _grid_with_two(city, 3, street)
    engine, case_id, _ = _sos(stack, city, cases_settings, in_sos, datetime.now(timezone.utc).replace(microsecond=0))
    dispatcher = Identity("t-check-dispatcher", frozenset({UserRole.DISPATCHER}), street)
    assert ctx.execute(dispatcher, RequestCaseCheck(case_id, RequestCheck(checker.terminal_id), rules)).ok
    token = _signed_in(service, registry, checker)
    status, uploaded, _ = call(service.port, "POST", f"{API}/photos", jpeg((20, 160, 90)), token, "image/jpeg")
    assert status in (200, 201), uploaded
    _answer(service, token, case_id=case_id, outcome="need_help", note="楼梯间摔倒", photo_refs=[uploaded["ref"]])
    _once(engine, cases_settings)

    sign_in(page, dashboard.url, "t-check-dispatcher")
    page.goto(f"{dashboard.url}/case/{case_id}")
    answer = page.locator("#case-check-0")
    answer.wait_for(timeout=20000)
    assert "Need help 需要支援" in answer.inner_text() and "楼梯间摔倒" in answer.inner_text()
    assert checker.name in answer.inner_text()
    page.wait_for_function("() => [...document.querySelectorAll('#case-check-0 img.photo-thumb')]"
                           ".some(i => i.complete && i.naturalWidth === 320)", timeout=15000)   # the photo, served
    assert page.locator("#case-check-0 a.photo-link").get_attribute("href") == \
        f"/photos/{uploaded['ref'].removeprefix('sha256:')}"
    assert page.locator("tr.case-event-check img.photo-thumb").count() == 1             # and in the timeline
    assert "Need help" in page.inner_text("tr.case-event-check")
    assert page.locator("button.case-do-request_check").count() == 1                      # ask someone else
    assert page.errors == []

    page.goto(f"{dashboard.url}/dispatch")
    chosen = page.locator(f"[id*='{case_id}']").first
    chosen.wait_for(timeout=20000)
    chosen.click()
    page.locator("#dispatch-cand-check-0").wait_for(timeout=20000)
    assert "Need help 需要支援" in page.inner_text("#dispatch-checks")
    assert page.locator("#dispatch-checks img.photo-thumb").count() == 1
    assert page.errors == []

"""The cases engine against the real stack: what the ingest stores becomes cases (through the
inbox its own transaction fills), and nobody acting lets a case climb the escalation ladder at the
configured times, each step exactly once, even when the engine is killed in the middle.

Limits run on a scaled clock here (GCC_CASES_TIME_SCALE = 1/600: the gas alarm's 10 minutes to
register are 1 s, the street's 30 minutes 3 s)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone

import orjson
import psycopg2
import pytest

from cases import store
from cases.engine import Engine
from cases.intake import Intake, IntakeSettings
from cases.limits import Urgency
from cases.machine import apply, open_case
from cases.model import Actor, ActorKind, Dispatch, Register, Source
from config.settings import REPO_ROOT
from stack import free_port
from stack.apps import _answers as answers

from ..support import wait_for
from .ingest_helpers import ThreadWorker, owner_rows
from .screens import iso, now, publish_as

pytestmark = pytest.mark.slow
SCALE = 1 / 600


def seeded(stack):
    """The cases engine's settings (its own role: least privilege, as deployed), with the default
    time limits and the calendar's days seeded as the engine seeds them."""
    settings = stack.app_settings("cases")
    conn = psycopg2.connect(settings.pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            store.seed(cur, [2026, 2027], "tests")
    finally:
        conn.close()
    return settings


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
def worker(stack):
    with ThreadWorker(stack, index=31, share_group=f"t{uuid.uuid4().hex[:8]}") as running:
        yield running


def _engine(settings, city, scale: float = SCALE) -> Engine:
    return Engine(settings.pg_dsn, Intake(city, IntakeSettings(alarm_min_severity=3)),
                  lambda cur: store.load_rules(cur, time_scale=scale))


class Running:
    """An engine on a thread of this process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.thread = threading.Thread(target=engine.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self.engine

    def __exit__(self, *exc):
        self.engine.stop_event.set()
        self.thread.join(10)


def _once(engine: Engine, settings) -> None:
    """One pass of the engine's loop: the inbox, then the due steps."""
    conn = psycopg2.connect(settings.pg_dsn)
    try:
        engine.once(conn)
    finally:
        conn.close()


_rows = owner_rows


def _gas(city, n: int):
    return [s for s in city.sensors if s.kind.value == "gas_detector"][n]


def _raise(stack, sensor, state: str = "raised", severity: int = 4, alarm_id: str | None = None) -> str:
    alarm_id = alarm_id or f"GAS-{uuid.uuid4().hex[:8]}"
    publish_as(stack, sensor.gateway_id, f"gcc/v1/gateway/{sensor.gateway_id}/alarm", orjson.dumps({
        "ts": iso(now()), "alarm_id": alarm_id, "sensor_id": sensor.sensor_id, "alarm_type": "gas_over_threshold",
        "severity": severity, "state": state, "value": 31.0}))
    return alarm_id


def _case_of(stack, sensor) -> tuple:
    rows = _rows(stack, "select case_id, state, urgency, deadline, place, org_code from cases where source_key = %s "
                        "and state <> 'closed'", f"alarm:{sensor.sensor_id}/gas_over_threshold")
    return rows[0] if rows else None


def test_a_gas_alarm_becomes_a_case_that_climbs_to_the_community_then_the_street(stack, city, worker,
                                                                                cases_settings):
    sensor = _gas(city, 3)
    with Running(_engine(cases_settings, city)):
        _raise(stack, sensor)
        case = wait_for(lambda: _case_of(stack, sensor), 10, "the alarm's case")
        case_id, state, urgency, deadline, place, org_code = case
        assert (state, urgency, org_code.strip()) == ("reported", "urgent", sensor.grid_code)
        assert place.startswith(city.building_by_id[sensor.building_id].name)   # named as people say it
        steps = wait_for(lambda: (r := _rows(stack, "select level, org_code, due_at, fired_at from case_escalations "
                                                    "where case_id = %s order by due_at", case_id)) and
                         len(r) >= 3 and r, 15, "grid, community and street steps")
    grid, community, street = steps[:3]
    assert [s[0] for s in steps[:3]] == ["grid", "community", "street"]
    assert [s[1] for s in steps[:3]] == [sensor.grid_code, sensor.grid_code[:12], sensor.grid_code[:9]]
    assert community[2] == deadline                                     # at the deadline
    assert abs((street[2] - community[2]).total_seconds() - 1800 * SCALE) < 0.01   # 30 (scaled) minutes later
    for _, _, due_at, fired_at in steps[:3]:
        assert timedelta(0) <= fired_at - due_at < timedelta(seconds=1.5), (due_at, fired_at)
    events = _rows(stack, "select command, actor, detail->>'level' from case_events where case_id = %s order by id",
                   case_id)
    assert events[0][:2] == ("open", "intake")
    assert [(c, a, lv) for c, a, lv in events[1:4]] == [("escalate", "escalation", "grid"),
                                                       ("escalate", "escalation", "community"),
                                                       ("escalate", "escalation", "street")]
    assert _rows(stack, "select escalation_level from cases where case_id = %s", case_id)[0][0] in ("street",
                                                                                                  "district")


def test_a_second_raise_and_a_clear_go_to_the_open_case_which_stays_open(stack, city, worker, cases_settings):
    sensor = _gas(city, 4)
    with Running(_engine(cases_settings, city, scale=1.0)):
        alarm_id = _raise(stack, sensor)
        case_id = wait_for(lambda: _case_of(stack, sensor), 10, "the case")[0]
        _raise(stack, sensor)                                            # raised again: the same case
        _raise(stack, sensor, state="cleared", alarm_id=alarm_id)        # cleared: still open
        wait_for(lambda: len(_rows(stack, "select 1 from case_sources where case_id = %s", case_id)) == 3, 10,
                 "the raise and the clear linked to the case")
    commands = [c for (c,) in _rows(stack, "select command from case_events where case_id = %s order by id", case_id)]
    assert commands == ["open", "raised_again", "device_cleared"]
    assert _rows(stack, "select count(*) from cases where source_key = %s",
                 f"alarm:{sensor.sensor_id}/gas_over_threshold") == [(1,)]
    assert _case_of(stack, sensor)[1] == "reported"                      # a person verifies, not the device


def test_an_alarm_below_the_threshold_stays_off_the_cases(stack, city, worker, cases_settings):
    sensor = _gas(city, 5)
    with Running(_engine(cases_settings, city, scale=1.0)) as engine:
        before = engine.counts["skipped"]
        _raise(stack, sensor, severity=2)
        wait_for(lambda: engine.counts["skipped"] > before, 10, "the low alarm looked at")
    assert _case_of(stack, sensor) is None


def test_reports_nearby_merge_and_a_report_of_another_kind_opens_its_own(stack, city, cases_settings):
    member = city.members[40]
    point = city.grid_by_code[member.grid_code].boundary.representative_point()
    t = datetime.now(timezone.utc)
    reports = [(f"R-{uuid.uuid4().hex[:6]}", "exposed_garbage", point.y, point.x),
               (f"R-{uuid.uuid4().hex[:6]}", "exposed_garbage", point.y + 0.0002, point.x),    # 22 m north
               (f"R-{uuid.uuid4().hex[:6]}", "noise", point.y, point.x)]
    conn = psycopg2.connect(stack.settings().pg_dsn)
    try:
        with conn, conn.cursor() as cur:      # as the ingest stores them (its trigger fills the inbox)
            for i, (report_id, category, lat, lon) in enumerate(reports):
                cur.execute("insert into incident_reports (time, report_id, terminal_id, member_id, category, "
                            "severity, lat, lon, address, grid_code) values (%s, %s, %s, %s, %s, 1, %s, %s, %s, %s)",
                            (t + timedelta(seconds=i), report_id, member.terminal_id, member.member_id, category,
                             lat, lon, "No. 8 Yangqiao Road", member.grid_code))
    finally:
        conn.close()
    engine = _engine(cases_settings, city, scale=1.0)
    _once(engine, cases_settings)
    linked = dict(_rows(stack, "select key, case_id from case_sources where kind = 'report' and key = any(%s)",
                        [f"{member.terminal_id}/{r[0]}" for r in reports]))
    first, second, noise = (linked[f"{member.terminal_id}/{r[0]}"] for r in reports)
    assert first == second != noise
    assert _rows(stack, "select command from case_events where case_id = %s order by id", first) == [("open",),
                                                                                                   ("merge",)]
    assert _rows(stack, "select place, state from cases where case_id = %s", noise) == [("No. 8 Yangqiao Road",
                                                                                       "reported")]


def test_an_sos_is_an_urgent_registered_case_at_once(stack, city, cases_settings):
    member = city.members[44]
    conn = psycopg2.connect(stack.settings().pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("insert into terminal_status (time, terminal_id, state, sos, grid_code) "
                        "values (now(), %s, 'online', true, %s)", (member.terminal_id, member.grid_code))
    finally:
        conn.close()
    engine = _engine(cases_settings, city, scale=1.0)
    _once(engine, cases_settings)
    [(state, urgency, title, deadline, opened)] = _rows(
        stack, "select state, urgency, title, deadline, opened_at from cases where source_key = %s",
        f"sos:{member.terminal_id}")
    assert (state, urgency) == ("registered", "urgent") and member.name in title
    assert deadline == opened + timedelta(minutes=10)                     # dispatch within 10 minutes


def test_an_inbox_row_that_fails_is_kept_with_its_error_and_the_others_go_on(stack, city, cases_settings):
    conn = psycopg2.connect(stack.settings().pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("insert into case_inbox (kind, key, time) values ('report', 'T-none/R-none', now()) "
                        "returning id")
            bad = cur.fetchone()[0]
    finally:
        conn.close()
    engine = _engine(cases_settings, city, scale=1.0)
    for _ in range(4):
        _once(engine, cases_settings)
    [(attempts, error)] = _rows(stack, "select attempts, last_error from case_inbox where id = %s", bad)
    assert attempts == 3 and "no report T-none/R-none" in error
    assert engine.counts["held"] == 1 and engine.counts["failed"] == 3


def test_killing_the_engine_in_the_middle_fires_each_step_exactly_once(stack, city, worker, cases_settings, tmp_path):
    sensor = _gas(city, 6)
    port = free_port()
    env = {**os.environ, **stack.app_env("cases", stack.account("cases")), "GCC_CASES_TIME_SCALE": str(SCALE),
           "GCC_CASES_METRICS_PORT": str(port)}
    log = open(tmp_path / "cases.log", "ab")  # noqa: SIM115 - the processes' log

    def start():
        proc = subprocess.Popen([sys.executable, "-m", "casework"], cwd=REPO_ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), 30, "the engine's health")
        return proc

    engine = start()
    try:
        _raise(stack, sensor)
        case_id = wait_for(lambda: _case_of(stack, sensor), 10, "the case")[0]
        wait_for(lambda: _rows(stack, "select 1 from case_escalations where case_id = %s and level = 'community'",
                               case_id), 10, "the community step")
        engine.send_signal(signal.SIGKILL)                              # before the street's step (3 s later)
        engine.wait(10)
        fired_before = len(_rows(stack, "select 1 from case_escalations where case_id = %s", case_id))
        killed_at = datetime.now(timezone.utc)
        wait_for(lambda: datetime.now(timezone.utc) > killed_at + timedelta(seconds=5), 10, "the street step due")
        engine = start()                                               # catches up
        wait_for(lambda: _rows(stack, "select 1 from case_escalations where case_id = %s and level = 'district'",
                               case_id), 30, "the district step")
    finally:
        engine.send_signal(signal.SIGTERM)
        assert engine.wait(20) == 0
        log.close()
    steps = _rows(stack, "select stage_seq, step, repeat, level, due_at, fired_at from case_escalations "
                         "where case_id = %s order by due_at", case_id)
    keys = [s[:3] for s in steps]
    assert len(keys) == len(set(keys))                                 # none twice
    assert [s[3] for s in steps[:4]] == ["grid", "community", "street", "district"]
    assert fired_before in (2, 3) and fired_before < len(steps)
    street = steps[2]
    if fired_before == 2:                                              # it fell due while the engine was dead
        assert street[5] - street[4] > timedelta(seconds=1)
    escalate_events = _rows(stack, "select count(*) from case_events where case_id = %s and command = 'escalate'",
                            case_id)[0][0]
    assert escalate_events == len(steps)                               # an event for each step, no more


def _dispatched_case(cases_settings, city, handler, grid_code: str) -> str:
    """A case of `grid_code`, registered and dispatched to `handler` by a dispatcher (as the screens will)."""
    dispatcher = Actor(ActorKind.USER, "t-dispatcher", frozenset({"dispatcher"}), "")
    conn = psycopg2.connect(cases_settings.pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            rules = store.load_rules(cur)
            at = datetime.now(timezone.utc)
            opened = open_case(store.next_case_id(cur, at), "manhole_cover", Urgency.URGENT, Source.REPORT, grid_code,
                               grid_code, Actor.system("tests"), at, rules, title="Missing manhole cover")
            registered = apply(opened.case, Register(), dispatcher, at, rules)
            dispatched = apply(registered.case, Dispatch(handler.terminal_id, grid_code), dispatcher, at, rules)
            store.insert(cur, dispatched.case, rules)
            store.add_events(cur, [*opened.events, *registered.events, *dispatched.events])
            return dispatched.case.case_id
    finally:
        conn.close()


def _work(stack, member, case_id: str, action: str, **fields) -> None:
    publish_as(stack, member.terminal_id, f"gcc/v1/terminal/{member.terminal_id}/case", orjson.dumps(
        {"ts": iso(now()), "case_id": case_id, "action": action, **fields}))


def test_a_terminal_works_its_own_case_and_others_are_refused_with_the_reason_in_the_audit_trail(
        stack, city, worker, cases_settings):
    grid = city.grids[30].code
    in_grid = [m for m in city.members if m.grid_code == grid]
    handler = next(m for m in in_grid if m.role.value == "grid_administrator")
    supervisor = next(m for m in in_grid if m.role.value == "grid_supervisor")
    stranger = next(m for m in city.members if m.grid_code != grid and m.role.value == "grid_supervisor")
    case_id = _dispatched_case(cases_settings, city, handler, grid)

    def state():
        return _rows(stack, "select state from cases where case_id = %s", case_id)[0][0]

    def refusals():
        return _rows(stack, "select actor, action, reason, scope_code from audit_log where target = %s "
                            "and outcome = 'refused' order by id", f"case:{case_id}")

    with Running(_engine(cases_settings, city, scale=1.0)):
        _work(stack, handler, case_id, "accept")
        wait_for(lambda: state() == "accepted", 10, "accepted by its handler")
        _work(stack, stranger, case_id, "feedback", note="I fixed it")            # not the handler
        wait_for(lambda: len(refusals()) == 1, 10, "the stranger's feedback refused")
        _work(stack, handler, case_id, "feedback", note="新井盖已装好", photo_refs=["photos/after.jpg"])
        wait_for(lambda: state() == "handled", 10, "the handler's feedback")
        _work(stack, stranger, case_id, "verify_pass")                           # a supervisor, of another grid
        wait_for(lambda: len(refusals()) == 2, 10, "the other grid's verification refused")
        _work(stack, supervisor, case_id, "verify_pass")
        wait_for(lambda: state() == "verified", 10, "verified by the grid's supervisor")
    first, second = refusals()
    assert (first[0], first[1], first[3].strip()) == (stranger.terminal_id, "case.feedback", grid)
    assert "only the terminal it is dispatched to" in first[2]
    assert second[1] == "case.verify" and "not a member of the case's grid" in second[2]
    events = _rows(stack, "select command, actor_kind, actor, to_state, detail->'photo_refs' from case_events "
                          "where case_id = %s order by id", case_id)
    assert [(c, k, a, s) for c, k, a, s, _ in events[-3:]] == [
        ("accept", "terminal", handler.terminal_id, "accepted"),
        ("feedback", "terminal", handler.terminal_id, "handled"),
        ("verify", "terminal", supervisor.terminal_id, "verified")]
    assert events[-2][4] == ["photos/after.jpg"]

"""Every command a screen can issue, executed as the screens execute it: through the dashboard's own
database role (gcc_dashboard) and Redis user, never the owner. Least privilege is only proven when
the app's own role does the work: a grant the screens need and lack fails here with the database's
"permission denied", not in front of a dispatcher with an HTTP 500 (issue 23, item 7).

Each scenario prepares what its command needs as the owner (a case in the right state, a member,
a gateway, an alarm, a diary entry), under another name, then gives the one command through the
dashboard's role and finds its audit row ("done", by this scenario's user). A module-level Action
of a screen's module without a scenario fails `test_every_action_of_the_screens_has_a_scenario`,
so the next command cannot go untested."""
from __future__ import annotations

import importlib
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone

import orjson
import psycopg2
import pytest

from cases import store
from cases.intake import INTAKE
from cases.limits import SOS_CATEGORY, Limit, Urgency
from cases.machine import Refusal, apply, open_case
from cases.model import (
    Accept,
    Acknowledge,
    Actor,
    ActorKind,
    Close,
    DecideExtension,
    Dispatch,
    Evaluate,
    Feedback,
    Refuse,
    Register,
    Reopen,
    RequestCheck,
    RequestExtension,
    Resume,
    Return,
    Source,
    Suspend,
    Verify,
)
from core.roles import UserRole
from dashboard import registry_commands as rc
from dashboard.account_commands import AddUser, CreateWallToken, NewPassword, RevokeWallToken, SetUserDisabled
from dashboard.alarms import AcknowledgeAlarm
from dashboard.announcements import Announce
from dashboard.authz import Identity
from dashboard.case_actions import (
    CASE_ACTIONS,
    CaseAction,
    CaseRules,
    NewLimitsVersion,
    OpenHotlineCase,
    Reassign,
    SetCalendarDay,
)
from dashboard.case_checks import RequestCaseCheck
from dashboard.commands import Action, Commands
from dashboard.kpis_diary import RateDiary
from registry import imports
from registry.boundaries import export_boundaries
from registry.broker import BrokerAdmin
from registry.store import Actor as RegistryActor
from registry.store import DeviceRegistry

from .ingest_helpers import owner_rows
from .test_case_notices import _reported_case as reported_case
from .test_cases_engine import seeded
from .test_commands import _open_alarm

# the modules whose module-level Actions are what the screens may do (dashboard/pages/* included)
ACTION_MODULES = ("dashboard.commands", "dashboard.alarms", "dashboard.account_commands", "dashboard.case_actions",
                  "dashboard.announcements", "dashboard.kpis_diary", "dashboard.registry_commands",
                  "dashboard.registry_ui", "dashboard.pages.members", "dashboard.pages.devices",
                  "dashboard.pages.gateways", "dashboard.pages.boundaries")
STAFF = frozenset({UserRole.ADMIN, UserRole.LEADER, UserRole.DISPATCHER})
PREPARER = Identity("cmd-owner-prep", STAFF, "")     # the owner's preparations are audited under this name


@dataclass
class Bench:
    """The two sides: the owner prepares, the dashboard's role gives the command under test."""
    city: object
    owner: Commands
    app: Commands
    owner_rules: CaseRules
    app_rules: CaseRules
    owner_registry: DeviceRegistry
    app_registry: DeviceRegistry
    owner_dsn: str
    app_dsn: str
    redis: object                  # the owner's client (an alarm raised as the ingest leaves it)
    stack: object
    settings: object               # the owner's
    who: Identity                  # this scenario's user: its audit rows are the command's
    n: int                         # which grid this scenario works in (scenarios do not share cases)

    @property
    def actor(self) -> RegistryActor:
        return RegistryActor(self.who.user, ("admin",), "127.0.0.1")

    @property
    def grid(self):
        return self.city.grids[self.n % len(self.city.grids)]

    @property
    def next_grid(self):
        return self.city.grids[(self.n + 1) % len(self.city.grids)]

    def members(self, count: int = 2):
        found = [m for m in self.city.members if m.grid_code == self.grid.code][:count]
        assert len(found) == count, f"grid {self.grid.code} has fewer than {count} members"
        return found

    def through_app(self, command) -> str | None:
        """The command through the dashboard's role: it must be done (a missing grant raises)."""
        result = self.app.execute(self.who, command, "127.0.0.1")
        assert result.ok, result.reason
        return result.reply

    def prepared(self, command) -> str | None:
        result = self.owner.execute(PREPARER, command, "127.0.0.1")
        assert result.ok, result.reason
        return result.reply


def _new(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- cases: prepared as the owner, to the state the command starts from -----------------------------

def _hotline_case(b: Bench) -> str:
    return b.prepared(OpenHotlineCase("exposed_garbage", "normal", b.grid.code, "Garbage at the gate", "Gate 2",
                                      b.owner_rules))


def _reported_case(b: Bench) -> str:
    """A resident's report, as the intake opens it (not yet registered)."""
    return reported_case(b.stack, b.settings, b.grid.code)


def _as_handler(b: Bench, case_id: str, command) -> None:
    """What the handler's terminal does (accept, feedback), as the engine applies it."""
    conn = psycopg2.connect(b.owner_dsn)
    try:
        with conn, conn.cursor() as cur:
            case = store.load(cur, case_id)
            member = b.city.member_by_terminal[case.handler]
            actor = Actor(ActorKind.TERMINAL, member.terminal_id, frozenset({member.role.value}), member.grid_code)
            rules = store.load_rules(cur)
            outcome = apply(case, command, actor, datetime.now(timezone.utc), rules)
            assert not isinstance(outcome, Refusal), outcome.reason
            store.save(cur, outcome.case, rules)
            store.record(cur, [outcome], b.owner_rules.recipients)
    finally:
        conn.close()


def _case_in(b: Bench, state: str) -> str:
    """A case of this scenario's grid in `state`, dispatched (if at all) to the grid's first member."""
    if state == "reported":
        return _reported_case(b)
    case_id = _hotline_case(b)
    steps = ["dispatched", "accepted", "handled", "verified", "closed"]
    handler = b.members(1)[0]
    for step in steps[:steps.index(state) + 1] if state in steps else []:
        if step == "dispatched":
            b.prepared(CaseAction(case_id, Dispatch(handler.terminal_id, handler.grid_code, rank=1), b.owner_rules))
        elif step == "accepted":
            _as_handler(b, case_id, Accept())
        elif step == "handled":
            _as_handler(b, case_id, Feedback("cleared"))
        elif step == "verified":
            b.prepared(CaseAction(case_id, Verify(True), b.owner_rules))
        elif step == "closed":
            b.prepared(CaseAction(case_id, Close(), b.owner_rules))
    if state == "suspended":
        b.prepared(CaseAction(case_id, Suspend("waiting for the season"), b.owner_rules))
    return case_id


def _case_command(state: str, command) -> Callable[[Bench], None]:
    def scenario(b: Bench) -> None:
        case_id = _case_in(b, state)
        b.through_app(CaseAction(case_id, command(b) if callable(command) else command, b.app_rules))
    return scenario


def _dispatch(b: Bench) -> Dispatch:
    handler = b.members(1)[0]
    return Dispatch(handler.terminal_id, handler.grid_code, rank=1, why="candidate #1")


def _reassign(b: Bench) -> None:
    case_id = _case_in(b, "dispatched")
    other = b.members(2)[1]
    b.through_app(Reassign(case_id, Dispatch(other.terminal_id, other.grid_code, rank=2), b.app_rules))


def _decide_extension(b: Bench) -> None:
    case_id = _case_in(b, "accepted")
    b.prepared(CaseAction(case_id, RequestExtension(Limit.parse("1wd"), "parts on order"), b.owner_rules))
    b.through_app(CaseAction(case_id, DecideExtension(True), b.app_rules))


def _request_check(b: Bench) -> None:
    """A member's SOS (its case as the intake opens it), a neighbour asked to check it (紧急核实): what
    to check is read, and the notice written, as the dashboard's role."""
    in_sos, checker = b.members(2)
    conn = psycopg2.connect(b.owner_dsn)
    try:
        with conn, conn.cursor() as cur:
            case = store.open_for_source(cur, f"sos:{in_sos.terminal_id}")
            if case is None:
                rules, at = store.load_rules(cur), datetime.now(timezone.utc)
                opened = open_case(store.next_case_id(cur, at), SOS_CATEGORY, Urgency.URGENT, Source.SOS,
                                   b.grid.code, b.grid.code, INTAKE, at, rules, title=f"SOS · {in_sos.name}")
                store.insert(cur, opened.case, rules, source_key=f"sos:{in_sos.terminal_id}")
                store.add_events(cur, opened.events)
                case = opened.case
    finally:
        conn.close()
    b.through_app(RequestCaseCheck(case.case_id, RequestCheck(checker.terminal_id), b.app_rules))


def _open_hotline_case(b: Bench) -> None:
    case_id = b.through_app(OpenHotlineCase("exposed_garbage", "urgent", b.grid.code, "Garbage in the stairwell",
                                            "Entrance 1", b.app_rules, note="a resident called 12345"))
    assert owner_rows(b.stack, "select state from cases where case_id = %s", case_id) == [("registered",)]


# --- alarms, announcements, the diary, the rules --------------------------------------------------

def _acknowledge_alarm(b: Bench) -> None:
    detectors = [s for s in b.city.sensors if s.kind.value == "gas_detector"]
    sensor = detectors[b.n % len(detectors)]
    alarm_id, _ = _open_alarm(b.settings, b.city, b.redis, sensor)
    b.through_app(AcknowledgeAlarm(sensor.sensor_id, alarm_id, note="crew on the way"))


def _rate_diary(b: Bench) -> None:
    member, entry = b.members(1)[0], _new("E")
    conn = psycopg2.connect(b.owner_dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("insert into diary_entries (time, entry_id, terminal_id, member_id, grid_code, category, text) "
                        "values (now(), %s, %s, %s, %s, 'other', 'the lift in building 3 squeaks')",
                        (entry, member.terminal_id, member.member_id, member.grid_code))
    finally:
        conn.close()
    b.through_app(RateDiary(member.terminal_id, entry, 4))
    b.through_app(RateDiary(member.terminal_id, entry, 5))        # rated again: the rating is replaced


def _new_limits(b: Bench) -> None:
    b.through_app(NewLimitsVersion("exposed_garbage", "handle", "*", f"{random.randint(100, 10_000)}m", b.app_rules))


def _calendar_day(b: Bench) -> None:
    day = date.fromordinal(date(2040, 1, 1).toordinal() + random.randint(0, 3000))
    b.through_app(SetCalendarDay(day, False, _new("local day off"), b.app_rules))
    b.through_app(SetCalendarDay(day, True, _new("make-up day"), b.app_rules))     # the same day again: an update


# --- people and wall screens --------------------------------------------------------------------

def _user_prepared(b: Bench, disabled: bool = False) -> str:
    username = _new("u")
    b.prepared(AddUser(username, "A test user", "leader", ""))
    if disabled:
        b.prepared(SetUserDisabled(username, True))
    return username


def _revoke_wall_token(b: Bench) -> None:
    name = _new("Wall by the door")
    b.prepared(CreateWallToken(name, ""))
    [(token_id,)] = owner_rows(b.stack, "select id from wall_tokens where name = %s", name)
    b.through_app(RevokeWallToken(token_id))


# --- the registry (the admin's pages): members, devices, gateways, sensors, boundaries ---------------

def _member_prepared(b: Bench) -> tuple[str, str]:
    member_id, terminal_id = _new("M"), _new("T")
    b.owner_registry.add_member(RegistryActor(PREPARER.user), member_id, "预备 网格员", "grid_administrator",
                                b.grid.code, terminal_id)
    return member_id, terminal_id


def _gateway_prepared(b: Bench) -> str:
    gateway_id = _new("GW")
    b.owner_registry.add_gateway(RegistryActor(PREPARER.user), gateway_id, "building_gateway", _buildings(b)[0])
    return gateway_id


def _sensor_prepared(b: Bench) -> str:
    gateway_id, sensor_id = _gateway_prepared(b), _new("S")
    b.owner_registry.add_sensor(RegistryActor(PREPARER.user), sensor_id, "gas_detector", gateway_id)
    return sensor_id


def _buildings(b: Bench) -> list[str]:
    found = [x.building_id for x in b.city.buildings if x.grid_code == b.grid.code][:2]
    return found if len(found) == 2 else [x.building_id for x in b.city.buildings[:2]]


def _add_member(b: Bench) -> None:
    b.through_app(rc.AddMember(_new("M"), "新 网格员", "grid_administrator", b.grid.code, _new("T")))


def _import_members(b: Bench) -> None:
    rows = "\n".join(f"{_new('M')},导入 网格员 {i},grid_supervisor,{b.grid.code},{_new('T')}" for i in range(2))
    result = b.app.execute(b.who, rc.ImportMembers(f"{','.join(imports.COLUMNS)}\n{rows}\n", "two.csv"), "127.0.0.1")
    assert result.ok and len(result.handed[0]) == 2 and result.handed[1] is None, result


def _member_then(change: Callable[[Bench, str, str], object]) -> Callable[[Bench], None]:
    def scenario(b: Bench) -> None:
        b.through_app(change(b, *_member_prepared(b)))
    return scenario


def _retire_device(b: Bench) -> None:
    member_id, _ = _member_prepared(b)
    phone = _new("P")
    b.owner_registry.add_device(RegistryActor(PREPARER.user), member_id, "owntracks", phone)
    b.through_app(rc.RetireDevice(phone))


def _import_boundaries(level: str) -> Callable[[Bench], None]:
    """The stored boundaries of a community's grids (or a street's communities) imported again
    unchanged: every unit updated in place (insert … on conflict do update)."""
    def scenario(b: Bench) -> None:
        parent = b.grid.code[:12] if level == "grids" else b.grid.code[:9]
        document = export_boundaries(b.owner_dsn, parent)
        result = b.app.execute(b.who, rc.ImportBoundaries(orjson.dumps(document), f"{parent}.geojson"), "127.0.0.1")
        assert result.ok, result.reason
        summary, stored = result.handed
        assert stored == parent and "(0 new)" in summary, summary
    return scenario


# (scenario, the action its command is audited as, what it does)
SCENARIOS: list[tuple[str, str, Callable[[Bench], None]]] = [
    ("enter a hotline case", "case.open", _open_hotline_case),
    ("register a report", "case.register", _case_command("reported", Register())),
    ("refuse a report", "case.refuse", _case_command("reported", Refuse("a duplicate of another report"))),
    ("offer (dispatch) a case", "case.dispatch", _case_command("registered", _dispatch)),
    ("withdraw an offer (return)", "case.return", _case_command("dispatched", Return("offered by mistake"))),
    ("reassign a case", "case.reassign", _reassign),
    ("ask for an extension", "case.request_extension",
     _case_command("accepted", RequestExtension(Limit.parse("1wd"), "parts on order"))),
    ("decide an extension", "case.decide_extension", _decide_extension),
    ("suspend a case", "case.suspend", _case_command("registered", Suspend("engineering works first"))),
    ("resume a case", "case.resume", _case_command("suspended", Resume())),
    ("verify a case", "case.verify", _case_command("handled", Verify(True))),
    ("close a case", "case.close", _case_command("verified", Close())),
    ("evaluate a case", "case.evaluate", _case_command("closed", Evaluate(5, "quick and clean"))),
    ("reopen a case", "case.reopen", _case_command("closed", Reopen("the garbage is back"))),
    ("acknowledge a case", "case.acknowledge", _case_command("registered", Acknowledge())),
    ("acknowledge an alarm", "alarm.acknowledge", _acknowledge_alarm),
    ("ask a member to check a case on site", "case.request_check", _request_check),
    ("send an announcement", "announcement.send",
     lambda b: b.through_app(Announce(b.grid.code, "Water off Tuesday", "From 9 to 12 in building 3.", 3))),
    ("rate a diary entry", "diary.rate", _rate_diary),
    ("a new version of the time limits", "time_limits.version", _new_limits),
    ("a calendar override", "calendar.day", _calendar_day),
    ("add a user", "user.add", lambda b: b.through_app(AddUser(_new("u"), "A new leader", "leader", ""))),
    ("a user's new password", "user.password", lambda b: b.through_app(NewPassword(_user_prepared(b)))),
    ("disable a user", "user.disable", lambda b: b.through_app(SetUserDisabled(_user_prepared(b), True))),
    ("enable a user", "user.enable", lambda b: b.through_app(SetUserDisabled(_user_prepared(b, disabled=True), False))),
    ("create a wall token", "wall_token.create", lambda b: b.through_app(CreateWallToken(_new("Wall in hall"), ""))),
    ("revoke a wall token", "wall_token.revoke", _revoke_wall_token),
    ("add a member", "registry.member.add", _add_member),
    ("import members from CSV", "registry.member.add", _import_members),
    ("change a member", "registry.member.change", _member_then(lambda b, m, t: rc.ChangeMember(m, "改名 网格员"))),
    ("move a member", "registry.member.move", _member_then(lambda b, m, t: rc.MoveMember(m, b.next_grid.code))),
    ("replace a terminal", "registry.member.replace_terminal",
     _member_then(lambda b, m, t: rc.ReplaceTerminal(m, _new("T")))),
    ("retire a member", "registry.member.retire", _member_then(lambda b, m, t: rc.RetireMember(m))),
    ("add a phone", "registry.device.add", _member_then(lambda b, m, t: rc.AddDevice(m, "owntracks", _new("P")))),
    ("enrol a handheld", "registry.device.add", _member_then(lambda b, m, t: rc.EnrolHandheld(m, "网格通"))),
    ("retire a phone", "registry.device.retire", _retire_device),
    ("a device's new password", "registry.credential.rotate", _member_then(lambda b, m, t: rc.RotateCredential(t))),
    ("revoke a device", "registry.credential.revoke", _member_then(lambda b, m, t: rc.RevokeCredential(t))),
    ("add a gateway", "registry.gateway.add",
     lambda b: b.through_app(rc.AddGateway(_new("GW"), "building_gateway", _buildings(b)[0]))),
    ("move a gateway", "registry.gateway.move",
     lambda b: b.through_app(rc.MoveGateway(_gateway_prepared(b), _buildings(b)[1]))),
    ("retire a gateway", "registry.gateway.retire", lambda b: b.through_app(rc.RetireGateway(_gateway_prepared(b)))),
    ("add a sensor", "registry.sensor.add",
     lambda b: b.through_app(rc.AddSensor(_new("S"), "gas_detector", _gateway_prepared(b)))),
    ("move a sensor", "registry.sensor.move",
     lambda b: b.through_app(rc.MoveSensor(_sensor_prepared(b), _buildings(b)[1]))),
    ("retire a sensor", "registry.sensor.retire", lambda b: b.through_app(rc.RetireSensor(_sensor_prepared(b)))),
    ("import a community's grid boundaries", "registry.boundaries.import", _import_boundaries("grids")),
    ("import a street's community boundaries", "registry.boundaries.import", _import_boundaries("communities")),
]


@pytest.fixture(scope="module")
def sides(stack, settings, city):
    """Commands and the registry on the owner's DSN and on the dashboard's own (its role, its Redis user)."""
    app_settings = stack.app_settings("dashboard")
    seeded(stack)                                  # the time limits and the calendar, as the engine seeds them
    before = {table: {r[0] for r in owner_rows(stack, f"select {key} from {table} where retired_at is null")}
              for table, key in _ADDED}
    owner_redis, app_redis = settings.redis_client(), app_settings.redis_client()
    owner = Commands(city, owner_redis, settings.pg_dsn, producer="test-prep")
    broker_admin = BrokerAdmin.from_settings(app_settings)
    app = Commands(city, app_redis, app_settings.pg_dsn, producer="test-as-dashboard",
                   registry=DeviceRegistry(app_settings.pg_dsn, broker_admin))
    yield {"city": city, "owner": owner, "app": app, "owner_rules": CaseRules(owner), "app_rules": CaseRules(app),
           "owner_registry": DeviceRegistry(settings.pg_dsn, broker_admin),
           "app_registry": DeviceRegistry(app_settings.pg_dsn, broker_admin), "owner_dsn": settings.pg_dsn,
           "app_dsn": app_settings.pg_dsn, "redis": owner_redis}
    owner_redis.close()
    app_redis.close()
    conn = psycopg2.connect(settings.pg_dsn)      # what the scenarios added leaves the city the next modules see
    try:
        with conn, conn.cursor() as cur:
            for table, key in _ADDED:
                cur.execute(f"update {table} set retired_at = now() where retired_at is null and {key} <> all(%s)",
                            (sorted(before[table]),))
    finally:
        conn.close()


_ADDED = (("sensors", "sensor_id"), ("gateways", "gateway_id"), ("member_devices", "device_id"),
          ("members", "member_id"))


def test_the_screens_run_as_their_own_database_role(stack, sides):
    assert owner_rows(stack, "select 1")            # the owner works; the dashboard's DSN is another role's
    conn = psycopg2.connect(sides["app_dsn"])
    try:
        with conn.cursor() as cur:
            cur.execute("select current_user")
            assert cur.fetchone()[0] == "gcc_dashboard"
    finally:
        conn.close()


@pytest.mark.parametrize(("scenario", "action", "run"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_a_screens_command_is_done_through_the_dashboards_own_role(stack, settings, sides, scenario, action, run):
    n = 10 + [s[0] for s in SCENARIOS].index(scenario) * 3          # each scenario its own grid: no shared cases
    who = Identity(_new("cmd"), STAFF, "", "Command tester")
    run(Bench(**sides, stack=stack, settings=settings, who=who, n=n))
    done = owner_rows(stack, "select count(*) from audit_log where actor = %s and action = %s and outcome = 'done'",
                      who.user, action)
    assert done[0][0] >= 1, f"{scenario}: no audit row '{action}' done by {who.user}"
    refused = owner_rows(stack, "select action, reason from audit_log where actor = %s and outcome <> 'done'", who.user)
    assert refused == []


def test_every_action_of_the_screens_has_a_scenario():
    """A new command of a screen's must add its scenario above (or it is never tried as gcc_dashboard)."""
    declared = {a.key for name in ACTION_MODULES for a in vars(importlib.import_module(name)).values()
                if isinstance(a, Action)}
    declared |= {a.key for a in CASE_ACTIONS.values()}
    assert {"case.open", "alarm.acknowledge", "registry.boundaries.import"} <= declared     # the scan finds them
    assert declared - {action for _, action, _ in SCENARIOS} == set()


def test_a_registry_change_through_the_bus_has_one_audit_row_done_or_refused(stack, settings, sides):
    """The registry writes its own row (done, or refused by its own checks); the bus writes one only
    for what the registry never saw (a scope refused): never two for one change."""
    who = Identity(_new("one-row"), STAFF, "", "One row")
    b = Bench(**sides, stack=stack, settings=settings, who=who, n=60)
    member_id = _new("M")
    b.through_app(rc.AddMember(member_id, "一 行", "grid_administrator", b.grid.code, _new("T")))
    again = b.app.execute(who, rc.AddMember(member_id, "二 行", "grid_administrator", b.grid.code, _new("T")))
    street = Identity(_new("one-row-street"), STAFF, b.next_grid.code[:9], "A street's admin")
    elsewhere = next(g.code for g in b.city.grids if not g.code.startswith(street.scope_code))
    outside = b.app.execute(street, rc.MoveMember(member_id, elsewhere))
    assert not again.ok and not outside.ok and "outside" in outside.reason, (again, outside)
    rows = owner_rows(stack, "select actor, outcome from audit_log where target = %s and actor = any(%s) order by id",
                      f"member:{member_id}", [who.user, street.user])
    assert rows == [(who.user, "done"), (who.user, "refused"), (street.user, "refused")], rows

"""What the case screens, the notices and the demo desk decide, without a database: who is offered
which action, who hears of which change, what a case-list filter accepts, how the desk times its
work."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import orjson
import pytest

from cases.limits import Limit, Unit
from cases.machine import SCREEN_ROLES, allowed, apply
from cases.model import (
    Accept,
    Acknowledge,
    Actor,
    ActorKind,
    Close,
    DecideExtension,
    Dispatch,
    Escalate,
    Feedback,
    Refuse,
    Register,
    Reopen,
    Return,
    Source,
    State,
    Verify,
)
from cases.notices import MAX_ESCALATED, Recipients, notices_for
from core.catalogue import ACTION_LABELS
from core.roles import Role
from dashboard.case_actions import CASE_ACTIONS, limit_spec
from dashboard.pages.case import stage_rows
from dashboard.pages.cases import SORT_LABELS, time_class, time_left
from dashboard.queries import CASE_SORTS, CaseFilter
from simulator.citygen import SCALES, generate
from simulator.desk import Desk, elapsed, when
from telemetry.notices import CaseNotice, NoticeKind
from tests.unit.test_case_machine import (
    CITY_DISPATCHER,
    DISPATCHER,
    ENGINE,
    FAR_DISPATCHER,
    HANDLER,
    LEADER,
    NOW,
    RULES_,
    SUPERVISOR,
    VIEWER,
    case_in,
)


@pytest.fixture(scope="module")
def city():
    return generate(SCALES["demo"], seed=11)


# --- what a screen offers -----------------------------------------------------------------------------

def test_a_street_dispatcher_is_offered_registration_of_a_reported_case_in_the_street():
    offered = allowed(case_in(State.REPORTED), DISPATCHER)
    assert Register in offered and Refuse in offered and Dispatch not in offered and Close not in offered


def test_nobody_outside_the_case_scope_and_no_wall_viewer_is_offered_anything():
    for state in State:
        assert allowed(case_in(state), FAR_DISPATCHER) == []
        assert allowed(case_in(state), VIEWER) == []


def test_a_leader_decides_extensions_and_a_dispatcher_does_not():
    handling = case_in(State.HANDLING)
    assert DecideExtension in allowed(handling, LEADER)
    assert DecideExtension not in allowed(handling, DISPATCHER)
    assert Return in allowed(handling, DISPATCHER)


def test_what_is_offered_is_what_the_machine_lets_through_by_state_and_who():
    """Offered means: not refused for the state, the role or the scope (values aside)."""
    probes = {Register: Register(), Dispatch: Dispatch(HANDLER.name), Close: Close(), Accept: Accept(),
              Reopen: Reopen("again"), Acknowledge: Acknowledge(), Refuse: Refuse("dup"), Return: Return("wrong")}
    for state in State:
        for actor in (DISPATCHER, CITY_DISPATCHER, LEADER, HANDLER, SUPERVISOR):
            case = case_in(state)
            offered = set(allowed(case, actor))
            for command_type, command in probes.items():
                outcome = apply(case, command, actor, NOW, RULES_)
                refused_for_who_or_state = not outcome and outcome.code in ("state", "actor", "scope")
                assert (command_type in offered) == (not refused_for_who_or_state), (state, actor.name, command_type)


def test_every_command_a_person_gives_is_a_dashboard_action_with_a_label_and_the_machines_roles():
    assert set(CASE_ACTIONS) == set(SCREEN_ROLES)
    for command, action in CASE_ACTIONS.items():
        assert action.key in ACTION_LABELS
        assert {r.value for r in action.roles} == set(SCREEN_ROLES[command])


# --- who hears what -----------------------------------------------------------------------------------

def _grid_case(city, state: State, handler_role: Role = Role.GRID_ADMINISTRATOR):
    grid = city.grids[0]
    handler = next(m for m in city.members if m.grid_code == grid.code and m.role is handler_role)
    case = replace(case_in(state), grid_code=grid.code, org_code=grid.code, handler=handler.terminal_id)
    return case, grid, handler


def test_a_dispatch_tells_the_new_handler_and_nobody_else(city):
    case, grid, handler = _grid_case(city, State.REGISTERED)
    case = replace(case, handler=None)
    outcome = apply(case, Dispatch(handler.terminal_id, grid.code), CITY_DISPATCHER, NOW, RULES_)
    [notice] = notices_for(outcome.case, outcome.events, Recipients(city))
    assert (notice.terminal_id, notice.kind) == (handler.terminal_id, NoticeKind.DISPATCHED)
    body = orjson.loads(notice.body)
    parsed = CaseNotice.parse(handler.terminal_id, orjson.dumps({"notice_id": 7, **body}))
    assert parsed.case_id == case.case_id and parsed.deadline == outcome.case.deadline and parsed.notice_id == 7


def test_feedback_asks_the_grids_supervisors_to_verify_and_a_failed_verification_sends_rework(city):
    case, grid, handler = _grid_case(city, State.HANDLING)
    case = replace(case, pending_extension=None)
    member = _actor_of(handler)
    handled = apply(case, Feedback("done"), member, NOW, RULES_)
    told = notices_for(handled.case, handled.events, Recipients(city))
    supervisors = {m.terminal_id for m in city.members if m.grid_code == grid.code and m.role is Role.GRID_SUPERVISOR}
    assert {n.terminal_id for n in told} == supervisors and {n.kind for n in told} == {NoticeKind.VERIFY}
    failed = apply(handled.case, Verify(False, "still there"), CITY_DISPATCHER, NOW, RULES_)
    [rework] = notices_for(failed.case, failed.events, Recipients(city))
    assert (rework.terminal_id, rework.kind) == (handler.terminal_id, NoticeKind.REWORK)
    assert orjson.loads(rework.body)["reason"] == "still there"


def test_an_escalation_to_a_street_tells_the_handler_first_and_at_most_so_many_supervisors(city):
    case, grid, handler = _grid_case(city, State.DISPATCHED)
    street = grid.code[:9]
    outcome = apply(case, Escalate(case.stage_seq, 2, 0, "street", street), ENGINE, NOW, RULES_)
    told = notices_for(outcome.case, outcome.events, Recipients(city))
    in_street = [m for m in city.members if m.role is Role.GRID_SUPERVISOR and m.grid_code.startswith(street)]
    assert told[0].terminal_id == handler.terminal_id
    assert len(told) == 1 + min(len(in_street), MAX_ESCALATED)
    own = next(m.terminal_id for m in in_street if m.grid_code == grid.code)
    assert told[1].terminal_id == own                      # the case's own grid's supervisor before the others
    assert {orjson.loads(n.body)["level"] for n in told} == {"street"}


def test_returning_a_case_withdraws_it_from_the_handler_it_had(city):
    case, grid, handler = _grid_case(city, State.DISPATCHED)
    outcome = apply(case, Return("wrong grid"), CITY_DISPATCHER, NOW, RULES_)
    [notice] = notices_for(outcome.case, outcome.events, Recipients(city))
    assert (notice.terminal_id, notice.kind) == (handler.terminal_id, NoticeKind.WITHDRAWN)


def _actor_of(member):
    return Actor(ActorKind.TERMINAL, member.terminal_id, frozenset({member.role.value}), member.grid_code)


# --- the case list's filter and the clock shown --------------------------------------------------------

def test_a_case_filter_refuses_what_it_does_not_know_and_keeps_what_it_does():
    assert CaseFilter.from_params({}) == CaseFilter()
    wanted = CaseFilter.from_params({"status": "handling", "category": "noise", "sort": "escalation", "days": "7"})
    assert wanted.params() == {"status": "handling", "category": "noise", "sort": "escalation", "days": "7"}
    assert CaseFilter.from_params(wanted.params()) == wanted
    for bad in ({"status": "lost"}, {"sort": "random()"}, {"days": "0"}, {"days": "x"}):
        with pytest.raises(ValueError):
            CaseFilter.from_params(bad)
    assert set(SORT_LABELS) == set(CASE_SORTS)


def test_the_time_left_turns_amber_then_red():
    case = case_in(State.DISPATCHED)
    assert time_class(case, NOW) == "case-ok"
    assert time_class(case, case.warn_at + timedelta(seconds=1)) == "case-warn"
    assert time_class(case, case.deadline + timedelta(seconds=1)) == "case-overdue"
    assert "overdue" in time_left(case, case.deadline + timedelta(minutes=5))
    assert time_class(case_in(State.SUSPENDED), NOW) == "case-idle"


def test_a_limit_reads_back_as_an_admin_typed_it():
    for spec in ("30m", "2h", "90m", "5wh", "1wd", "0.5wd"):
        assert Limit.parse(limit_spec(Limit.parse(spec))) == Limit.parse(spec)
    assert limit_spec(Limit(120, Unit.MINUTES)) == "2h"


# --- the demo desk ---------------------------------------------------------------------------------------

def test_the_desk_acts_mostly_in_time_some_late_a_few_very_late():
    shares = [when(f"C-{i}", "reported1") for i in range(4000)]
    on_time = sum(s < 1 for s in shares) / len(shares)
    very_late = sum(s >= 2.5 for s in shares) / len(shares)
    assert 0.72 < on_time < 0.82 and 0.05 < very_late < 0.11
    assert when("C-1", "reported1") == when("C-1", "reported1")      # the same on every pass


def test_the_desk_registers_a_report_once_its_moment_has_come_and_dispatches_to_a_member_of_the_grid(city):
    desk = Desk("", city, lambda cur: RULES_, lambda changed: None, None)
    case, grid, _ = _grid_case(city, State.REPORTED)
    case = replace(case, handler=None, source=Source.REPORT, stage_started_at=NOW,
                   deadline_original=NOW + timedelta(minutes=30), deadline=NOW + timedelta(minutes=30))
    moment = when(case.case_id, f"reported{case.stage_seq}")
    assert desk.decide(case, NOW + timedelta(minutes=30 * moment - 0.1)) is None
    decided = desk.decide(case, NOW + timedelta(minutes=30 * moment + 0.1))
    assert isinstance(decided, (Register, Refuse))
    assert elapsed(case, NOW + timedelta(minutes=15)) == pytest.approx(0.5)
    registered = replace(case, state=State.REGISTERED, stage_started_at=NOW)
    dispatched = desk.decide(registered, NOW + timedelta(hours=3))
    handler = city.member_by_terminal[dispatched.handler]
    assert handler.grid_code == grid.code and handler.role is not Role.GRID_SUPERVISOR


def test_a_case_page_lists_each_stage_clock_with_its_deadline_and_whether_it_was_kept():
    case = replace(case_in(State.REPORTED), stage_started_at=NOW)
    events = []
    steps = [(Register(), DISPATCHER, 5), (Dispatch(HANDLER.name), DISPATCHER, 25), (Accept(), HANDLER, 60)]
    at = NOW
    for command, actor, minutes in steps:
        at = NOW + timedelta(minutes=minutes)
        outcome = apply(case, command, actor, at, RULES_)
        case = outcome.case
        events += [{"time": e.at, "command": e.command, "to_state": e.to_state.value, "detail": e.detail}
                   for e in outcome.events]
    opened = {"time": NOW, "command": "open", "to_state": "reported",
              "detail": {"stage": "register", "deadline": (NOW + timedelta(minutes=10)).isoformat()}}
    rows = stage_rows([opened, *events], at + timedelta(minutes=1))
    assert [r["stage"] for r in rows] == ["register", "dispatch", "accept", "handle"]
    register, dispatch, accept, handle = rows
    assert register["late_s"] < 0                                   # registered after 5 of its 10 minutes
    assert dispatch["started"] == NOW + timedelta(minutes=5) and dispatch["late_s"] > 0   # urgent: 10 min, took 20
    assert accept["late_s"] > 0 and handle["ended"] is None and handle["deadline"] == case.deadline


def test_the_desk_returns_a_case_whose_handler_has_been_silent_for_four_limits(city):
    desk = Desk("", city, lambda cur: RULES_, lambda changed: None, None)
    case, _, _ = _grid_case(city, State.ACCEPTED)
    case = replace(case, pending_extension=None, stage_started_at=NOW, deadline_original=NOW + timedelta(hours=1))
    assert desk.decide(case, NOW + timedelta(hours=3)) is None
    assert isinstance(desk.decide(case, NOW + timedelta(hours=4, minutes=1)), Return)


def test_a_repeated_escalation_step_tells_only_the_handler_and_the_cases_own_grid(city):
    case, grid, handler = _grid_case(city, State.DISPATCHED)
    outcome = apply(case, Escalate(case.stage_seq, 3, 2, "district", grid.code[:6]), ENGINE, NOW, RULES_)
    told = {n.terminal_id for n in notices_for(outcome.case, outcome.events, Recipients(city))}
    own = {m.terminal_id for m in city.members if m.grid_code == grid.code and m.role is Role.GRID_SUPERVISOR}
    assert told == {handler.terminal_id} | own

"""The case state machine, without a database: every command from every state, who may give it,
what it stores (deadlines, counts), and the escalation ladder with an injected clock."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from cases.calendar import WorkCalendar
from cases.escalation import DEFAULT_LADDERS, Position, due
from cases.limits import Limit, LimitTable, Stage, Unit, Urgency
from cases.machine import RULES, Applied, Refusal, Rules, apply, open_case
from cases.model import (
    Accept,
    Acknowledge,
    Actor,
    ActorKind,
    Case,
    CheckAnswer,
    Close,
    DecideExtension,
    Dispatch,
    Escalate,
    Evaluate,
    Extension,
    Feedback,
    OfferExpired,
    Refuse,
    Register,
    Reject,
    Reopen,
    RequestCheck,
    RequestExtension,
    Resume,
    Return,
    Source,
    Start,
    State,
    Suspend,
    Verify,
)
from core.city import CITY_TZ
from core.orgcodes import Level

GRID, OTHER_GRID = "350102001001001", "350102001001002"
STREET, OTHER_STREET = "350102001", "350102002"
NOW = datetime(2026, 11, 4, 10, 0, tzinfo=CITY_TZ)      # a Wednesday, working hours
RULES_ = Rules({1: LimitTable.defaults()}, WorkCalendar())

DISPATCHER = Actor(ActorKind.USER, "ana", frozenset({"dispatcher"}), STREET)
CITY_DISPATCHER = Actor(ActorKind.USER, "bo", frozenset({"dispatcher"}), "")
LEADER = Actor(ActorKind.USER, "lei", frozenset({"leader"}), STREET)
VIEWER = Actor(ActorKind.USER, "vic", frozenset({"wall_viewer"}), "")
FAR_DISPATCHER = Actor(ActorKind.USER, "far", frozenset({"dispatcher"}), OTHER_STREET)
HANDLER = Actor(ActorKind.TERMINAL, f"T{GRID}-1", frozenset({"grid_administrator"}), GRID)
STRANGER = Actor(ActorKind.TERMINAL, f"T{GRID}-2", frozenset({"grid_coordinator"}), GRID)
SUPERVISOR = Actor(ActorKind.TERMINAL, f"T{GRID}-4", frozenset({"grid_supervisor"}), GRID)
FAR_SUPERVISOR = Actor(ActorKind.TERMINAL, f"T{OTHER_GRID}-4", frozenset({"grid_supervisor"}), OTHER_GRID)
ENGINE = Actor.system("escalation")

# each command, the actor who may give it, and the state it leads to (None: the state stays)
COMMANDS = [
    (Register(), DISPATCHER, State.REGISTERED),
    (Refuse("a duplicate of C-7"), DISPATCHER, State.REFUSED),
    (Dispatch(HANDLER.name, GRID), DISPATCHER, State.DISPATCHED),
    (Accept(), HANDLER, State.ACCEPTED),
    (Reject("not my grid's job"), HANDLER, State.REGISTERED),
    (Start(), HANDLER, State.HANDLING),
    (Feedback("cover replaced", ("photo/1.jpg",)), HANDLER, State.HANDLED),
    (Verify(True), SUPERVISOR, State.VERIFIED),
    (Verify(False, "still loose"), SUPERVISOR, State.HANDLING),
    (Close(), DISPATCHER, State.CLOSED),
    (Evaluate(4), LEADER, State.EVALUATED),
    (Return("wrong category"), DISPATCHER, State.REGISTERED),
    (RequestExtension(Limit(1, Unit.WORKING_DAYS), "part on order"), HANDLER, None),
    (DecideExtension(True), LEADER, None),
    (Suspend("waits for the road works"), LEADER, State.SUSPENDED),
    (Resume(), LEADER, State.HANDLING),       # back to where it was suspended from (handling, here)
    (Reopen("came back the next day"), LEADER, State.HANDLING),
    (Acknowledge(), DISPATCHER, None),
    (Escalate(1, 1, 0, "community", GRID[:12]), ENGINE, None),
    (OfferExpired("not accepted within 3 min"), ENGINE, State.REGISTERED),
    (RequestCheck(STRANGER.name, sensor_id="gas-1", alarm_id="A-1"), DISPATCHER, None),
    (CheckAnswer("confirmed", "smell of gas"), STRANGER, None),
]


def case_in(state: State) -> Case:
    """A case in `state`, with what that state implies (a handler, a pending extension, a clock)."""
    case = Case("C-1", "manhole_cover", Urgency.URGENT, Source.REPORT, GRID, GRID, state, NOW, stage_seq=1,
                deadline=NOW + timedelta(hours=2), deadline_original=NOW + timedelta(hours=2),
                warn_at=NOW + timedelta(minutes=96))
    if state not in (State.REPORTED, State.REGISTERED, State.REFUSED):
        case = replace(case, handler=HANDLER.name)
    if state in (State.ACCEPTED, State.HANDLING):
        case = replace(case, pending_extension=Extension(Limit(1, Unit.WORKING_DAYS), "part", HANDLER.name, NOW))
    if state is State.SUSPENDED:
        case = replace(case, suspended_from=State.HANDLING, deadline=None, deadline_original=None, warn_at=None)
    return case


def _fits(command, case: Case) -> Case:
    """The preconditions beyond the state: asking for an extension needs none pending; a check is of
    an alarm's (or an SOS's) case, and answered by a terminal asked (tests/unit/test_case_checks.py)."""
    if isinstance(command, RequestCheck):
        return replace(case, source=Source.ALARM)
    if isinstance(command, CheckAnswer):
        return replace(case, source=Source.ALARM, checkers=(STRANGER.name,))
    return replace(case, pending_extension=None) if isinstance(command, RequestExtension) else case


@pytest.mark.parametrize("command, actor, to", COMMANDS, ids=[f"{c.name}-{i}" for i, (c, _, _) in enumerate(COMMANDS)])
@pytest.mark.parametrize("state", list(State), ids=[s.value for s in State])
def test_every_command_from_every_state_is_applied_or_refused_for_the_state(command, actor, to, state):
    case = _fits(command, case_in(state))
    outcome = apply(case, command, actor, NOW + timedelta(minutes=5), RULES_)
    starts, _ = RULES[type(command)]
    if state in starts:
        assert isinstance(outcome, Applied), outcome
        assert outcome.case.state is (to or state)
        (event,) = outcome.events
        assert (event.command, event.from_state, event.to_state, event.actor) == (command.name, state,
                                                                                 outcome.case.state, actor)
    else:
        assert outcome == Refusal("state", outcome.reason) and state.value in outcome.reason


def test_the_commands_cover_every_rule():
    assert {type(c) for c, _, _ in COMMANDS} == set(RULES)


@pytest.mark.parametrize("command, state, actor, code", [
    (Register(), State.REPORTED, VIEWER, "actor"),               # a wall viewer changes nothing
    (Register(), State.REPORTED, LEADER, "actor"),               # leaders do not register
    (Register(), State.REPORTED, FAR_DISPATCHER, "scope"),       # another street's dispatcher
    (Register(), State.REPORTED, HANDLER, "actor"),              # a terminal does not register
    (Accept(), State.DISPATCHED, STRANGER, "actor"),             # not the terminal it went to
    (Accept(), State.DISPATCHED, DISPATCHER, "actor"),
    (Feedback("done"), State.HANDLING, STRANGER, "actor"),
    (Verify(True), State.HANDLED, FAR_SUPERVISOR, "actor"),      # a supervisor of another grid
    (Verify(True), State.HANDLED, replace(SUPERVISOR, name=HANDLER.name), "actor"),   # their own work
    (Verify(True), State.HANDLED, STRANGER, "actor"),            # not a supervisor
    (DecideExtension(True), State.HANDLING, DISPATCHER, "actor"),   # a leader decides
    (Escalate(1, 0, 0, "grid", GRID), State.REGISTERED, DISPATCHER, "actor"),
    (Close(), State.VERIFIED, FAR_DISPATCHER, "scope"),
])
def test_who_may_not_is_refused_with_a_reason_and_nothing_changes(command, state, actor, code):
    case = case_in(state)
    outcome = apply(case, command, actor, NOW, RULES_)
    assert isinstance(outcome, Refusal) and outcome.code == code and outcome.reason
    assert case == case_in(state)


def test_a_city_dispatcher_and_the_grid_supervisor_may_verify_and_the_city_covers_every_street():
    assert apply(case_in(State.HANDLED), Verify(True), CITY_DISPATCHER, NOW, RULES_)
    assert apply(case_in(State.HANDLED), Verify(True), SUPERVISOR, NOW, RULES_)


@pytest.mark.parametrize("command, said", [
    (Refuse("  "), "needs a reason"), (Reject(""), "needs a reason"), (Verify(False), "needs a reason"),
    (Feedback(" "), "needs a note"), (Evaluate(6), "1 to 5"), (Feedback("x", ("",)), "photo"),
    (Feedback("x", tuple(f"p{i}" for i in range(11))), "photo"), (Refuse("x" * 501), "at most 500"),
    (RequestExtension(Limit(31, Unit.WORKING_DAYS), "long"), "at most"),
    (DecideExtension(False), "needs a reason"),
])
def test_bad_values_are_refused_with_what_is_wrong(command, said):
    state = next(iter(RULES[type(command)][0] - {State.SUSPENDED}))
    state = State.HANDLED if isinstance(command, Verify) else state
    case = _fits(command, case_in(state))
    actor = next(a for c, a, _ in COMMANDS if type(c) is type(command))
    outcome = apply(case, command, actor, NOW, RULES_)
    assert isinstance(outcome, Refusal) and outcome.code == "invalid" and said in outcome.reason, outcome


def test_a_report_becomes_a_case_whose_clock_and_deadline_are_stored():
    opened = open_case("C-9", "dirty_road", Urgency.NORMAL, Source.REPORT, GRID, GRID, Actor.system("intake"),
                       NOW, RULES_)
    case = opened.case
    assert case.state is State.REPORTED and case.stage is Stage.REGISTER and case.stage_seq == 1
    assert case.deadline == NOW + timedelta(minutes=30) == case.deadline_original
    assert case.warn_at == NOW + timedelta(minutes=24)          # amber at 80 %
    assert opened.events[0].command == "open" and opened.events[0].detail["source"] == "report"
    sos = open_case("C-10", "sos", Urgency.URGENT, Source.SOS, GRID, GRID, Actor.system("intake"), NOW, RULES_)
    assert sos.case.state is State.REGISTERED and sos.case.deadline == NOW + timedelta(minutes=10)
    hotline = open_case("C-11", "noise", Urgency.NORMAL, Source.HOTLINE, GRID, GRID, VIEWER, NOW, RULES_)
    assert isinstance(hotline, Refusal) and hotline.code == "actor"
    unknown = open_case("C-12", "aliens", Urgency.NORMAL, Source.REPORT, GRID, GRID, ENGINE, NOW, RULES_)
    assert isinstance(unknown, Refusal) and "aliens" in unknown.reason


def test_a_case_walks_its_whole_life_with_each_stage_clock_from_its_own_limit():
    rules, t = RULES_, NOW
    case = open_case("C-2", "dirty_road", Urgency.NORMAL, Source.REPORT, GRID, GRID, ENGINE, t, rules).case
    steps = [(Register(), DISPATCHER, t + timedelta(minutes=30)),             # dispatch within 30 min
             (Dispatch(HANDLER.name, GRID), DISPATCHER, t + timedelta(minutes=30)),   # accept within 30
             (Accept(), HANDLER, datetime(2026, 11, 4, 17, 0, tzinfo=CITY_TZ)),  # 5 working h: 10-12, 14-17
             (Start(), HANDLER, datetime(2026, 11, 4, 17, 0, tzinfo=CITY_TZ)),   # the same clock runs on
             (Feedback("swept"), HANDLER, t + timedelta(hours=1)),               # verify: 1 working hour
             (Verify(True), SUPERVISOR, t + timedelta(hours=1)),                 # close: 1 working hour
             (Close(), DISPATCHER, None)]
    seq = case.stage_seq
    for command, actor, deadline in steps:
        outcome = apply(case, command, actor, t, rules)
        assert outcome, outcome
        case = outcome.case
        assert case.deadline == deadline, (command.name, case.deadline)
        if not isinstance(command, Start) and deadline is not None:
            assert case.stage_seq == seq + 1
        seq = case.stage_seq
    assert case.closed_at == t and case.state is State.CLOSED


def test_rework_returns_and_reopening_are_counted_and_restart_the_clock():
    later = NOW + timedelta(hours=1)
    failed = apply(case_in(State.HANDLED), Verify(False, "still dirty"), SUPERVISOR, later, RULES_).case
    assert (failed.state, failed.rework_count, failed.stage_seq) == (State.HANDLING, 1, 2)
    assert failed.deadline == later + timedelta(hours=2)         # the manhole cover's limit again
    again = apply(replace(failed, state=State.HANDLED), Verify(False, "no"), SUPERVISOR, later, RULES_).case
    assert again.rework_count == 2
    returned = apply(case_in(State.ACCEPTED), Return("wrong grid"), DISPATCHER, later, RULES_).case
    assert (returned.state, returned.handler, returned.return_count) == (State.REGISTERED, None, 1)
    reopened = apply(case_in(State.CLOSED), Reopen("back again"), LEADER, later, RULES_).case
    assert (reopened.reopen_count, reopened.closed_at, reopened.deadline) == (1, None, later + timedelta(hours=2))


def test_an_approved_extension_moves_the_deadline_and_keeps_the_original():
    case = replace(case_in(State.HANDLING), pending_extension=None, category="dirty_road", urgency=Urgency.NORMAL,
                   deadline=datetime(2026, 11, 4, 16, 0, tzinfo=CITY_TZ),
                   deadline_original=datetime(2026, 11, 4, 16, 0, tzinfo=CITY_TZ))
    asked = apply(case, RequestExtension(Limit(1, Unit.WORKING_DAYS), "part on order"), HANDLER, NOW, RULES_).case
    assert asked.pending_extension.asked_by == HANDLER.name and asked.deadline == case.deadline
    twice = apply(asked, RequestExtension(Limit(1, Unit.WORKING_HOURS), "more"), HANDLER, NOW, RULES_)
    assert isinstance(twice, Refusal) and "awaits a decision" in twice.reason
    approved = apply(asked, DecideExtension(True), LEADER, NOW, RULES_)
    assert approved.case.deadline == datetime(2026, 11, 5, 16, 0, tzinfo=CITY_TZ)     # one working day later
    assert approved.case.deadline_original == case.deadline_original
    assert (approved.case.extension_count, approved.case.pending_extension) == (1, None)
    refused = apply(asked, DecideExtension(False, "do it today"), LEADER, NOW, RULES_).case
    assert (refused.deadline, refused.extension_count, refused.pending_extension) == (case.deadline, 0, None)


def test_suspending_stops_the_clock_and_resuming_starts_a_new_one():
    suspended = apply(case_in(State.HANDLING), Suspend("road works"), LEADER, NOW, RULES_).case
    assert (suspended.deadline, suspended.suspended_from) == (None, State.HANDLING)
    resumed = apply(suspended, Resume(), LEADER, NOW + timedelta(days=3), RULES_).case
    assert resumed.state is State.HANDLING and resumed.deadline == NOW + timedelta(days=3, hours=2)
    assert resumed.stage_seq == suspended.stage_seq + 1


def test_an_sos_is_acknowledged_once():
    case = case_in(State.REGISTERED)
    seen = apply(case, Acknowledge(), DISPATCHER, NOW, RULES_).case
    assert seen.acknowledged_by == "ana" and seen.state is State.REGISTERED
    again = apply(seen, Acknowledge(), CITY_DISPATCHER, NOW, RULES_)
    assert isinstance(again, Refusal) and "already acknowledged by ana" in again.reason


# --- the escalation ladder, with an injected clock ---------------------------------------------------

def _unaccepted() -> Case:
    opened = open_case("C-3", "gas_over_threshold", Urgency.URGENT, Source.ALARM, GRID, GRID, ENGINE, NOW, RULES_)
    return opened.case        # reported: register within 10 min, amber at 8


def test_the_ladder_climbs_grid_community_street_district_at_its_times():
    case, ladder = _unaccepted(), DEFAULT_LADDERS[Stage.REGISTER]
    assert case.deadline == NOW + timedelta(minutes=10)
    timeline = [(7, []), (8, [Level.GRID]), (10, [Level.COMMUNITY]), (39, []), (40, [Level.STREET]),
                (130, [Level.DISTRICT]), (249, []), (250, [Level.DISTRICT]), (370, [Level.DISTRICT])]
    position, fired = None, []
    for minute, expected in timeline:
        result = due(case, ladder, position, NOW + timedelta(minutes=minute))
        assert [f.level for f in result.firings] == expected, minute
        fired += result.firings
        position = result.position
    assert [f.org_code for f in fired[:3]] == [GRID, GRID[:12], GRID[:9]]
    assert fired[3].org_code == GRID[:6]
    assert [f.repeat for f in fired[3:]] == [0, 1, 2]      # the district again every 2 hours


def test_after_downtime_each_step_fires_once_and_a_repeat_once_for_the_gap():
    case, ladder = _unaccepted(), DEFAULT_LADDERS[Stage.REGISTER]
    result = due(case, ladder, None, NOW + timedelta(hours=9))
    assert [(f.level, f.repeat) for f in result.firings] == [(Level.GRID, 0), (Level.COMMUNITY, 0),
                                                             (Level.STREET, 0), (Level.DISTRICT, 0)]
    assert result.next_at > NOW + timedelta(hours=9)
    again = due(case, ladder, result.position, NOW + timedelta(hours=9))
    assert again.firings == ()                                 # asked twice: nothing twice


def test_acting_stops_the_climb_and_a_new_stage_starts_the_ladder_again():
    case, ladder = _unaccepted(), DEFAULT_LADDERS[Stage.REGISTER]
    first = due(case, ladder, None, NOW + timedelta(minutes=10))
    registered = apply(case, Register(), DISPATCHER, NOW + timedelta(minutes=11), RULES_).case
    later = due(registered, DEFAULT_LADDERS[registered.stage], first.position, NOW + timedelta(minutes=12))
    assert later.firings == () and later.position == Position(registered.stage_seq)
    assert later.next_at == registered.warn_at
    closed = replace(registered, state=State.CLOSED, deadline=None)
    assert due(closed, ladder, later.position, NOW + timedelta(days=1)).firings == ()


def test_a_street_held_case_does_not_escalate_to_a_community():
    case = replace(_unaccepted(), grid_code=None, org_code=STREET)
    result = due(case, DEFAULT_LADDERS[Stage.REGISTER], None, NOW + timedelta(hours=3))
    assert [f.level for f in result.firings] == [Level.DISTRICT]


def test_every_state_stage_urgency_level_and_source_has_a_bilingual_label_for_the_screens():
    from cases.model import Source as CaseSource
    from dashboard.vocabulary import for_browser

    labels = for_browser()["labels"]
    assert set(labels["case_state"]) == {s.value for s in State}
    assert set(labels["case_stage"]) == {s.value for s in Stage}
    assert set(labels["urgency"]) == {u.value for u in Urgency} == set(for_browser()["colours"]["urgency"])
    assert set(labels["org_level"]) == {lv.value for lv in Level}
    assert set(labels["case_source"]) == {s.value for s in CaseSource}
    from cases.limits import categories
    assert set(categories()) <= set(labels["category"])       # every case's category has a name
    assert all(" " in text for group in ("case_state", "case_stage", "urgency") for text in labels[group].values())

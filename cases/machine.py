"""The case workflow as a pure state machine: `apply(case, command, actor, now, rules)`.

It answers with `Applied(case', events)` or a `Refusal(code, reason)` that changes nothing: a
command from a state it does not start from, an actor who may not give it (role, scope, not the
handler), or a value out of bounds. No clock, database or MQTT: the caller passes `now`, stores the
new case and its events in one transaction, and tells the screens and terminals after the commit.

Who may do what (`RULES`): people at the screens by their login's role and within their org unit;
the terminal of the member a case is dispatched to for accepting, handling and feedback; a grid
supervisor's terminal, in the case's grid and not its handler, for verification; the escalation
engine (system) for escalation steps; a dispatcher asks a member to check a case raised by an
alarm or an SOS on site (紧急核实: never the member in SOS), and only a terminal asked answers it,
once (its answer is the case's record in any state; `need_help` makes an open case urgent and
unacknowledged again). Whenever a stage starts its clock, its deadline is computed
from the case's time-limit table and the working calendar and stored with the case.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from cases.calendar import WorkCalendar
from cases.limits import Limit, LimitTable, Stage, Unit, Urgency
from cases.model import (
    OPEN,
    Accept,
    Acknowledge,
    Actor,
    ActorKind,
    Case,
    CheckAnswer,
    Close,
    Command,
    DecideExtension,
    Dispatch,
    Escalate,
    Evaluate,
    Event,
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
from core import freetext
from core.orgcodes import Level, contains
from core.roles import Role, UserRole
from telemetry.kinds.alarm_check import OUTCOMES as CHECK_OUTCOMES

MAX_REASON = 500
MAX_NOTE = 2000
MAX_PHOTOS = 10
MAX_PHOTO_REF = 200
MAX_EXTENSION = Limit(30, Unit.WORKING_DAYS)
_LEVEL_ORDER = [Level.GRID, Level.COMMUNITY, Level.STREET, Level.DISTRICT]


@dataclass(frozen=True)
class Rules:
    """What the machine needs besides the case: the time limits of each version and the calendar."""
    limits: dict[int, LimitTable]
    calendar: WorkCalendar
    warn_fraction: float = 0.8      # a stage turns amber at this share of its limit

    def table(self, version: int) -> LimitTable:
        return self.limits[version]

    @property
    def current_version(self) -> int:
        return max(self.limits)


@dataclass(frozen=True)
class Applied:
    case: Case
    events: tuple[Event, ...]

    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True)
class Refusal:
    code: str                       # "state", "actor", "scope", "invalid"
    reason: str

    def __bool__(self) -> bool:
        return False


Outcome = Applied | Refusal


# --- who may ------------------------------------------------------------------------------------------
Check = Callable[[Actor, Case], str | None]      # None: allowed; else why not

# an Actor carries its roles as values (a str Enum member hashes by its name, so it would not meet its value in a set)
DISPATCHERS = frozenset({UserRole.DISPATCHER.value, UserRole.ADMIN.value})
LEADERS = frozenset({UserRole.LEADER.value, UserRole.ADMIN.value})
STAFF = DISPATCHERS | LEADERS


def _staff(roles: frozenset[str]) -> Check:
    def check(actor: Actor, case: Case) -> str | None:
        if actor.kind is not ActorKind.USER or not actor.roles & roles:
            return f"needs a login with one of the roles {', '.join(sorted(roles))}"
        if not contains(actor.scope_code, case.org_code):
            return f"{case.case_id} lies outside {actor.name}'s scope {actor.scope_code or 'the city'}"
        return None
    return check


def _handler(actor: Actor, case: Case) -> str | None:
    if actor.kind is ActorKind.TERMINAL and case.handler is not None and actor.name == case.handler:
        return None
    return f"only the terminal it is dispatched to ({case.handler or 'nobody yet'}) may"


def _grid_verifier(actor: Actor, case: Case) -> str | None:
    if actor.kind is not ActorKind.TERMINAL or Role.GRID_SUPERVISOR.value not in actor.roles:
        return "needs a grid supervisor's terminal"
    if case.grid_code is None or actor.scope_code != case.grid_code:
        return f"{actor.name} is not a member of the case's grid {case.grid_code}"
    if actor.name == case.handler:
        return "nobody verifies their own work"
    return None


def _asked(actor: Actor, case: Case) -> str | None:
    if actor.kind is ActorKind.TERMINAL and actor.name in case.checkers:
        return None
    return f"{actor.name} was not asked to check {case.case_id} (or has answered already)"


def _system(actor: Actor, case: Case) -> str | None:
    return None if actor.kind is ActorKind.SYSTEM else "only the cases engine may"


def _any(*checks: Check) -> Check:
    def check(actor: Actor, case: Case) -> str | None:
        reasons = [c(actor, case) for c in checks]
        return None if any(r is None for r in reasons) else "; or ".join(r for r in reasons if r)
    return check


# who at the screens may give each command, by login role (dashboard/commands.py's actions are these)
SCREEN_ROLES: dict[type, frozenset[str]] = {
    Register: DISPATCHERS, Refuse: DISPATCHERS, Dispatch: DISPATCHERS, Verify: DISPATCHERS, Close: DISPATCHERS,
    Evaluate: STAFF, Return: DISPATCHERS, RequestExtension: DISPATCHERS, DecideExtension: LEADERS, Suspend: STAFF,
    Resume: STAFF, Reopen: STAFF, Acknowledge: DISPATCHERS, RequestCheck: DISPATCHERS,
}
_STAGED = frozenset(s for s in OPEN if s is not State.SUSPENDED)
_S = {c: _staff(roles) for c, roles in SCREEN_ROLES.items()}
RULES: dict[type, tuple[frozenset[State], Check]] = {
    Register: (frozenset({State.REPORTED}), _S[Register]),
    Refuse: (frozenset({State.REPORTED, State.REGISTERED}), _S[Refuse]),
    Dispatch: (frozenset({State.REGISTERED}), _any(_S[Dispatch], _system)),   # the engine: the next candidate
    Accept: (frozenset({State.DISPATCHED}), _handler),
    Reject: (frozenset({State.DISPATCHED}), _handler),
    Start: (frozenset({State.ACCEPTED}), _handler),
    Feedback: (frozenset({State.ACCEPTED, State.HANDLING}), _handler),
    Verify: (frozenset({State.HANDLED}), _any(_S[Verify], _grid_verifier)),
    Close: (frozenset({State.VERIFIED}), _S[Close]),
    Evaluate: (frozenset({State.CLOSED}), _S[Evaluate]),
    Return: (frozenset({State.DISPATCHED, State.ACCEPTED, State.HANDLING}), _any(_S[Return], _handler)),
    RequestExtension: (frozenset({State.ACCEPTED, State.HANDLING}), _any(_handler, _S[RequestExtension])),
    DecideExtension: (frozenset({State.ACCEPTED, State.HANDLING}), _S[DecideExtension]),
    Suspend: (_STAGED, _S[Suspend]),
    Resume: (frozenset({State.SUSPENDED}), _S[Resume]),
    Reopen: (frozenset({State.CLOSED, State.EVALUATED}), _S[Reopen]),
    Acknowledge: (OPEN, _S[Acknowledge]),
    RequestCheck: (OPEN, _S[RequestCheck]),
    CheckAnswer: (frozenset(State), _asked),      # an answer is the case's record in any state (it was asked)
    Escalate: (_STAGED, _system),
    OfferExpired: (frozenset({State.DISPATCHED}), _system),
}


# --- the machine --------------------------------------------------------------------------------------

def open_case(case_id: str, category: str, urgency: Urgency, source: Source, grid_code: str | None,
              org_code: str, actor: Actor, now: datetime, rules: Rules, title: str = "", place: str = "",
              detail: dict | None = None, lat: float | None = None, lon: float | None = None) -> Outcome:
    """A new case. Reports and alarms arrive `reported` (someone registers them); an SOS and a case a
    dispatcher enters are registered at once (a dispatcher is looking at it, or must be now)."""
    try:
        for stage in Stage:         # every stage it may reach has a limit: the category is known
            rules.table(rules.current_version).limit(category, stage, urgency)
    except KeyError as missing:
        return Refusal("invalid", str(missing).strip("'\""))
    registered = source in (Source.SOS, Source.HOTLINE)
    if source is Source.HOTLINE:
        refused = _staff(DISPATCHERS)(actor, Case(case_id, category, urgency, source, grid_code, org_code,
                                                  State.REPORTED, now))
        if refused:
            return Refusal("actor", refused)
    case = Case(case_id, category, urgency, source, grid_code, org_code,
                State.REGISTERED if registered else State.REPORTED, now, title=title[:200], place=place[:200],
                lat=lat, lon=lon, limits_version=rules.current_version)
    case = _enter_stage(case, now, rules)
    return Applied(case, (Event(case_id, now, "open", actor, None, case.state, None,
                                {"source": source.value, "category": category, "urgency": urgency.value,
                                 "stage": case.stage.value, "deadline": _iso(case.deadline), **(detail or {})}),))


def apply(case: Case, command: Command, actor: Actor, now: datetime, rules: Rules) -> Outcome:
    """The case after `command` by `actor` at `now`, and its events; or why not."""
    rule = RULES.get(type(command))
    if rule is None:
        return Refusal("invalid", f"{type(command).__name__} is not a case command")
    starts, who = rule
    if case.state not in starts:
        return Refusal("state", f"{command.name} is not possible in state {case.state.value} "
                                f"(only from {', '.join(sorted(s.value for s in starts))})")
    refused = who(actor, case)
    if refused:
        return Refusal("scope" if "outside" in refused else "actor", refused)
    invalid = _invalid(command, case, rules)
    if invalid:
        return Refusal("invalid", invalid)
    changed, reason, detail = _STEPS[type(command)](case, command, now, rules, actor)
    if changed.stage_seq != case.stage_seq:     # a stage clock started: the event says which, until when
        detail = {**detail, "stage": changed.stage.value, "deadline": _iso(changed.deadline)}
    event = Event(case.case_id, now, command.name, actor, case.state, changed.state, reason, detail)
    return Applied(changed, (event,))


def allowed(case: Case, actor: Actor) -> list[type]:
    """The commands `actor` may give `case` now, by its state and who the actor is (the values a
    command carries are checked when it is given): what a screen offers."""
    return [command for command, (starts, who) in RULES.items() if case.state in starts and who(actor, case) is None]


def _invalid(command: Command, case: Case, rules: Rules) -> str | None:
    for name in ("reason", "note"):
        value = getattr(command, name, None)
        limit = MAX_NOTE if name == "note" else MAX_REASON
        if value is not None and len(value) > limit:
            return f"a {name} has at most {limit} characters"
        wrong = freetext.problem(value, freetext.NOTE) if value is not None else None
        if wrong:                                 # people's text: no control characters (core.freetext)
            return f"a {name} {wrong}"
    needs_reason = (Refuse, Reject, Return, Suspend, Reopen, RequestExtension, OfferExpired)
    if isinstance(command, needs_reason) and not command.reason.strip():
        return f"{command.name} needs a reason"
    if isinstance(command, Verify) and not command.passed and not command.reason.strip():
        return "a failed verification needs a reason (what is still wrong)"
    if isinstance(command, DecideExtension):
        if case.pending_extension is None:
            return "no extension has been asked for"
        if not command.approve and not command.reason.strip():
            return "refusing an extension needs a reason"
    if isinstance(command, Feedback) and not command.note.strip():
        return "feedback needs a note of what was done"
    photos = getattr(command, "photo_refs", ())
    if len(photos) > MAX_PHOTOS or any(not p or len(p) > MAX_PHOTO_REF for p in photos):
        return f"at most {MAX_PHOTOS} photo references of 1 to {MAX_PHOTO_REF} characters"
    if isinstance(command, Evaluate) and not 1 <= command.rating <= 5:
        return "a rating is 1 to 5"
    if isinstance(command, RequestExtension):
        if case.pending_extension is not None:
            return f"an extension asked by {case.pending_extension.asked_by} awaits a decision"
        if _minutes(command.limit, rules) > _minutes(MAX_EXTENSION, rules):
            return f"an extension is at most {MAX_EXTENSION}"
    if isinstance(command, Dispatch) and not command.handler.strip():
        return "dispatch needs a handler"
    if isinstance(command, RequestCheck):
        return _invalid_check_request(command, case)
    if isinstance(command, CheckAnswer) and command.outcome not in CHECK_OUTCOMES:
        return f"a check's outcome is one of {', '.join(CHECK_OUTCOMES)}, not {command.outcome!r}"
    if isinstance(command, Acknowledge) and case.acknowledged_by is not None:
        return f"already acknowledged by {case.acknowledged_by}"
    if isinstance(command, Escalate) and command.stage_seq != case.stage_seq:
        return f"the step belongs to stage clock {command.stage_seq}, the case is at {case.stage_seq}"
    return None


def _invalid_check_request(command: RequestCheck, case: Case) -> str | None:
    if case.source not in (Source.ALARM, Source.SOS):
        return "only a case raised by an alarm or an SOS is checked on site"
    if not command.terminal_id.strip():
        return "a check needs the member to ask"
    if case.source_key == f"sos:{command.terminal_id}":
        return f"{command.terminal_id} raised the SOS: ask another member to check it"
    if command.terminal_id in case.checkers:
        return f"{command.terminal_id} was asked already and has not answered yet"
    return None


def _minutes(limit: Limit, rules: Rules) -> float:
    """A limit's length in minutes, clock or working (to compare limits, not to add them)."""
    return limit.amount if limit.unit is Unit.MINUTES else limit.working_minutes(rules.calendar.minutes_per_day)


# --- what each command does (case, command, now, rules) -> (case', reason, detail) ----------------------

def _register(case, c, now, rules, actor):
    return _enter_stage(replace(case, state=State.REGISTERED), now, rules), None, {}


def _refuse(case, c, now, rules, actor):
    return _stop(replace(case, state=State.REFUSED)), c.reason, {}


def _dispatch(case, c, now, rules, actor):
    moved = replace(case, state=State.DISPATCHED, handler=c.handler, unassigned=False)
    detail = {"handler": c.handler, "handler_grid": c.handler_grid}
    if c.rank is not None:
        detail.update(rank=c.rank, why=c.why[:300])
    return _enter_stage(moved, now, rules), None, detail


def _accept(case, c, now, rules, actor):
    return _enter_stage(replace(case, state=State.ACCEPTED), now, rules), None, {}


def _reject(case, c, now, rules, actor):
    back = replace(case, state=State.REGISTERED, handler=None)
    return _enter_stage(back, now, rules), c.reason, {"handler": case.handler}


def _start(case, c, now, rules, actor):
    return replace(case, state=State.HANDLING), None, {}


def _feedback(case, c, now, rules, actor):
    return _enter_stage(replace(case, state=State.HANDLED), now, rules), None, \
        {"note": c.note, "photo_refs": list(c.photo_refs)}


def _verify(case, c, now, rules, actor):
    if c.passed:
        return _enter_stage(replace(case, state=State.VERIFIED), now, rules), None, \
            {"passed": True, "photo_refs": list(c.photo_refs)}
    rework = replace(case, state=State.HANDLING, rework_count=case.rework_count + 1)
    return _enter_stage(rework, now, rules), c.reason, {"passed": False, "rework": rework.rework_count,
                                                        "photo_refs": list(c.photo_refs)}


def _close(case, c, now, rules, actor):
    return _stop(replace(case, state=State.CLOSED, closed_at=now)), None, {}


def _evaluate(case, c, now, rules, actor):
    return replace(case, state=State.EVALUATED, rating=c.rating), None, {"rating": c.rating, "note": c.note}


def _return(case, c, now, rules, actor):
    back = replace(case, state=State.REGISTERED, handler=None, return_count=case.return_count + 1)
    return _enter_stage(back, now, rules), c.reason, {"handler": case.handler, "returns": back.return_count}


def _request_extension(case, c, now, rules, actor):
    asked = Extension(c.limit, c.reason, actor.name, now)
    return replace(case, pending_extension=asked), c.reason, {"limit": str(c.limit)}


def _decide_extension(case, c, now, rules, actor):
    asked = case.pending_extension
    if not c.approve:
        return replace(case, pending_extension=None), c.reason, {"approved": False, "limit": str(asked.limit)}
    later = rules.calendar.add(case.deadline or now, asked.limit)
    extended = replace(case, pending_extension=None, deadline=later, extension_count=case.extension_count + 1)
    return extended, c.reason or None, {"approved": True, "limit": str(asked.limit), "deadline": _iso(later),
                                        "deadline_original": _iso(case.deadline_original)}


def _suspend(case, c, now, rules, actor):
    return _stop(replace(case, state=State.SUSPENDED, suspended_from=case.state)), c.reason, \
        {"from": case.state.value}


def _resume(case, c, now, rules, actor):
    back = replace(case, state=case.suspended_from or State.REGISTERED, suspended_from=None)
    return _enter_stage(back, now, rules), None, {}


def _reopen(case, c, now, rules, actor):
    again = replace(case, state=State.HANDLING, closed_at=None, rating=None, reopen_count=case.reopen_count + 1)
    return _enter_stage(again, now, rules), c.reason, {"reopened": again.reopen_count}


def _offer_expired(case, c, now, rules, actor):
    back = replace(case, state=State.REGISTERED, handler=None)
    return _enter_stage(back, now, rules), c.reason, {"handler": case.handler}


def _acknowledge(case, c, now, rules, actor):
    return replace(case, acknowledged_by=actor.name), None, {}


def _request_check(case, c, now, rules, actor):
    return replace(case, checkers=(*case.checkers, c.terminal_id)), c.reason or None, \
        {"terminal_id": c.terminal_id, **c.target()}


def _check(case, c, now, rules, actor):
    """The answer, recorded; `need_help` makes the case urgent and unacknowledged again (an SOS
    pulses on the wall again, a dispatcher must acknowledge it anew); the clock running keeps its
    deadline, the next stages take the urgent limits."""
    answered = replace(case, checkers=tuple(t for t in case.checkers if t != actor.name))
    if c.outcome == "need_help" and case.is_open:
        answered = replace(answered, urgency=Urgency.URGENT, acknowledged_by=None)
    detail = {"outcome": c.outcome, "note": c.note, "photo_refs": list(c.photo_refs),
              **{k: v for k, v in (("sensor_id", c.sensor_id), ("alarm_id", c.alarm_id)) if v}}
    if answered.urgency is not case.urgency:
        detail["urgency"] = answered.urgency.value
    return answered, None, detail


def _escalate(case, c, now, rules, actor):
    higher = _higher(case.escalation_level, c.level)
    return replace(case, escalation_level=higher), None, \
        {"step": c.step, "repeat": c.repeat, "level": c.level, "org_code": c.org_code, "stage_seq": c.stage_seq}


_STEPS = {Register: _register, Refuse: _refuse, Dispatch: _dispatch, Accept: _accept, Reject: _reject,
          Start: _start, Feedback: _feedback, Verify: _verify, Close: _close, Evaluate: _evaluate,
          Return: _return, RequestExtension: _request_extension, DecideExtension: _decide_extension,
          Suspend: _suspend, Resume: _resume, Reopen: _reopen, Acknowledge: _acknowledge, Escalate: _escalate,
          OfferExpired: _offer_expired, RequestCheck: _request_check, CheckAnswer: _check}


def _enter_stage(case: Case, now: datetime, rules: Rules) -> Case:
    """Start the clock of the case's stage: a new stage number, the deadline and the warning time
    computed from the case's own version of the limits, and the ladder from its first step."""
    stage = case.stage
    if stage is None:
        return _stop(case)
    limit = rules.table(case.limits_version).limit(case.category, stage, case.urgency)
    deadline = rules.calendar.add(now, limit)
    return replace(case, stage_seq=case.stage_seq + 1, stage_started_at=now, deadline=deadline,
                   deadline_original=deadline, warn_at=rules.calendar.add(now, limit.scaled(rules.warn_fraction)),
                   escalation_level=None)


def _stop(case: Case) -> Case:
    return replace(case, deadline=None, deadline_original=None, warn_at=None, stage_started_at=None,
                   escalation_level=None, pending_extension=None)


def _higher(current: str | None, level: str) -> str:
    if current is None:
        return level
    order = [lv.value for lv in _LEVEL_ORDER]
    return level if order.index(level) > order.index(current) else current


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


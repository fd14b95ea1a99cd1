"""Escalation ladders (督办 / 升级): what happens when a stage's clock runs out, as data.

A ladder is an ordered list of steps per stage, in the way PagerDuty, Opsgenie and Grafana OnCall
keep escalation policies: each step says when (at the warning or the deadline, plus a delay), whom
(the org level to notify: the grid itself, then its community, street, district), under which
condition (not accepted yet / not closed yet) and whether it repeats (the last step, every so often,
while the condition holds). The ladder restarts whenever a stage clock starts (the case's
`stage_seq`), so accepting or closing stops the climb and reopening starts it again.

`due(case, ladder, position, now)` is pure: which steps are due now, from where the engine left
off, and when the next one will be. After downtime every step that fell due fires once, in order;
a repeating step fires once for the whole gap, not once per missed period.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from cases.limits import Limit, Stage, Unit
from cases.model import NOT_ACCEPTED, OPEN, Case
from core.orgcodes import Level, ancestor, level_of


class Anchor(str, Enum):
    WARNING = "warning"             # the stage turned amber (a share of its limit)
    DEADLINE = "deadline"           # the stage's (extended) deadline


class Condition(str, Enum):
    NOT_ACCEPTED = "not_accepted"   # nobody has taken it on
    NOT_CLOSED = "not_closed"       # it is still open


@dataclass(frozen=True)
class Step:
    anchor: Anchor
    level: Level                    # whom: GRID warns the grid's own members; higher levels supervise
    condition: Condition
    after: Limit | None = None      # past the anchor (None: at it)
    repeat: Limit | None = None     # again every so often while the condition holds (last step only)


Ladder = tuple[Step, ...]


def _ladder(condition: Condition) -> Ladder:
    return (Step(Anchor.WARNING, Level.GRID, condition),
            Step(Anchor.DEADLINE, Level.COMMUNITY, condition),
            Step(Anchor.DEADLINE, Level.STREET, condition, after=Limit(30, Unit.MINUTES)),
            Step(Anchor.DEADLINE, Level.DISTRICT, condition, after=Limit(120, Unit.MINUTES),
                 repeat=Limit(120, Unit.MINUTES)))


# The defaults: warn the grid at amber, the community at the deadline, the street 30 minutes and the
# district 2 hours later (again every 2 hours until someone acts).
DEFAULT_LADDERS: dict[Stage, Ladder] = {
    **{stage: _ladder(Condition.NOT_ACCEPTED) for stage in (Stage.REGISTER, Stage.DISPATCH, Stage.ACCEPT)},
    **{stage: _ladder(Condition.NOT_CLOSED) for stage in (Stage.HANDLE, Stage.VERIFY, Stage.CLOSE)},
}


@dataclass(frozen=True)
class Position:
    """Where a case is on its ladder: the stage clock, and the next step (and repeat) to fire."""
    stage_seq: int
    step: int = 0
    repeat: int = 0


@dataclass(frozen=True)
class Firing:
    stage_seq: int
    step: int
    repeat: int
    level: Level
    org_code: str                   # the org unit notified
    due_at: datetime


@dataclass(frozen=True)
class Due:
    firings: tuple[Firing, ...]
    position: Position              # where to go on from
    next_at: datetime | None        # when the next step falls due (None: the ladder is done)


def validate(ladder: Ladder) -> None:
    """A ladder's steps are in time order and only the last one repeats."""
    for i, step in enumerate(ladder):
        if step.repeat is not None and i != len(ladder) - 1:
            raise ValueError("only the last step of a ladder repeats")
        if step.repeat is not None and step.repeat.unit is not Unit.MINUTES:
            raise ValueError("a repeat is in clock minutes")


for _ladder_of_stage in DEFAULT_LADDERS.values():     # the defaults obey the rules they state
    validate(_ladder_of_stage)


def due(case: Case, ladder: Ladder, position: Position | None, now: datetime, calendar=None) -> Due:
    """The steps due at `now` for the case's current stage clock, from `position` on."""
    if position is None or position.stage_seq != case.stage_seq:
        position = Position(case.stage_seq)            # a new stage clock: the ladder starts again
    if not case.is_open or case.deadline is None or not ladder:
        return Due((), position, None)
    firings, step, repeat = [], position.step, position.repeat
    while step < len(ladder):
        at = _due_at(case, ladder[step], repeat, calendar)
        if at > now:
            return Due(tuple(firings), Position(case.stage_seq, step, repeat), at)
        if _holds(ladder[step].condition, case):
            org = _notified(case, ladder[step].level)
            if org is not None:
                firings.append(Firing(case.stage_seq, step, repeat, ladder[step].level, org, at))
        if ladder[step].repeat is not None:
            every = _add(calendar, at, ladder[step].repeat) - at
            missed = max(0, int((now - at) / every))       # after downtime: one firing for the gap
            repeat += missed + 1
            next_at = _due_at(case, ladder[step], repeat, calendar)
            return Due(tuple(firings), Position(case.stage_seq, step, repeat), next_at)
        step, repeat = step + 1, 0
    return Due(tuple(firings), Position(case.stage_seq, step, 0), None)


def _due_at(case: Case, step: Step, repeat: int, calendar) -> datetime:
    base = case.warn_at if step.anchor is Anchor.WARNING and case.warn_at is not None else case.deadline
    at = base if step.after is None else _add(calendar, base, step.after)
    if step.repeat is not None and repeat:
        at = _add(calendar, at, step.repeat.scaled(repeat))
    return at


def _add(calendar, start: datetime, limit: Limit) -> datetime:
    """`limit` after `start` (by the calendar, which may run a demo's scaled clock; without one,
    clock minutes only)."""
    if calendar is not None:
        return calendar.add(start, limit)
    if limit.unit is not Unit.MINUTES:
        raise ValueError("without a calendar, a step's delay is in clock minutes")
    return start + timedelta(minutes=limit.amount)


def _holds(condition: Condition, case: Case) -> bool:
    if condition is Condition.NOT_ACCEPTED:
        return case.state in NOT_ACCEPTED
    return case.state in OPEN


def _notified(case: Case, level: Level) -> str | None:
    """The org unit at `level` above the case (None when the case is held above that level already:
    a street's own case does not escalate to a community)."""
    where = case.grid_code or case.org_code
    if not where:
        return None
    own = level_of(case.org_code) if case.org_code else Level.DISTRICT
    if level is not Level.GRID and level.code_length >= own.code_length:
        return None
    if level is Level.GRID:
        return case.grid_code
    return ancestor(where, level)

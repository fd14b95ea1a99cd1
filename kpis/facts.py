"""The assessment's facts, folded from a case's event log: a pure function of (facts, event) ->
(facts', what to count), as the state machine is of (case, command). No clock or database: the
maintainer (kpis/rollup.py) and the history generator (simulator/history.py) both feed events through
`fold`, and the deadlines that pass while nobody acts through `deadline_passed`.

What is counted, and on which day (city time), so that any period's rates are sums of rollup rows:

* every **stage clock** (register, dispatch, accept, handle, verify, close) is due once, on the
  day it ended by its own step (on time when at or before its deadline, approved extensions
  included) or on the day its deadline passed with the stage still open (late); a stage that ends
  another way (suspended, refused, rejected, returned) is not counted unless it was late already;
* a case is **due to close** (应结案) from the moment it was handled (first feedback) or any stage
  after registration went past its deadline, whichever comes first: it joins that day's cohort,
  and the cohort's counters follow the case afterwards (closed, closed on time, suspended,
  extended): the closure and on-time closure rates of a period are of the cases due in it;
* events are counted on their own day: registered, dispatched, handled, reworked, returned,
  closed, refused, reopened, extensions approved, suspensions, cases first overdue;
* durations (register, dispatch, accept, handle, close) are counted on the day they end, as a
  count, a sum and a log histogram bin (kpis/indicators.py: mean and p90).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from cases.model import FINISHED, State
from core.city import CITY_TZ

STAGES = ("register", "dispatch", "accept", "handle", "verify", "close")
# the step that ends each stage as it should end (any other ending is not the stage done)
FORWARD = {"register": frozenset({"register"}), "dispatch": frozenset({"dispatch"}),
           "accept": frozenset({"accept"}), "handle": frozenset({"feedback"}), "verify": frozenset({"verify"}),
           "close": frozenset({"close"})}
STOPPED = FINISHED | {State.SUSPENDED}                               # states with no clock
MEASURES = ("register", "dispatch", "accept", "handle", "close")        # durations, each ending at its step
# the day's event counters, and the cohort's
EVENT_COUNTERS = ("registered", "dispatched", "handled", "reworked", "returned", "closed", "refused", "reopened",
                  "extensions", "suspensions", "went_overdue")
COHORT_COUNTERS = ("due", "due_closed", "due_on_time", "assessable", "due_suspended", "due_extended")
COUNTERS = EVENT_COUNTERS + COHORT_COUNTERS
HISTOGRAM_GAMMA = 1.1           # bin k holds durations in (γ^(k-1), γ^k] seconds: a p90 within 5 %


def city_day(at: datetime) -> date:
    return at.astimezone(CITY_TZ).date()


def duration_bin(seconds: float) -> int:
    """The log-histogram bin of a duration (0: a second or less)."""
    return 0 if seconds <= 1 else math.ceil(math.log(seconds) / math.log(HISTOGRAM_GAMMA))


def bin_upper(k: int) -> float:
    return HISTOGRAM_GAMMA ** k


@dataclass(frozen=True)
class CaseEvent:
    """One row of case_events, as much of it as the facts need."""
    id: int
    case_id: str
    time: datetime
    command: str
    from_state: str | None
    to_state: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class CaseFacts:
    """A case as the assessment sees it (one row of case_facts)."""
    case_id: str
    org_code: str
    category: str
    opened_at: datetime
    last_event_id: int = 0
    handler: str | None = None
    registered_at: datetime | None = None
    dispatched_at: datetime | None = None       # the latest dispatch (time to accept runs from it)
    accepted_at: datetime | None = None         # the latest acceptance (time to handle runs from it)
    handled_at: datetime | None = None          # the first feedback
    closed_at: datetime | None = None           # the first closure
    stage: str | None = None                    # the clock running now, since when, until when
    stage_seq: int = 0
    stage_started_at: datetime | None = None
    stage_deadline: datetime | None = None
    stage_late: bool = False                    # counted late already (its deadline passed)
    due_day: date | None = None                 # the cohort of cases due to close it belongs to
    closed: bool = False                        # closed now (a reopened case is not)
    late: bool = False                          # some stage of it went past its deadline
    suspended: bool = False                     # it was suspended (缓办) at some time
    extended: bool = False                      # an extension was approved
    refused: bool = False

    @property
    def cohort(self) -> dict[str, int]:
        """What the case adds to its cohort's counters now (nothing before it is due, or refused)."""
        if self.due_day is None or self.refused:
            return {}
        assessable = not (self.suspended or self.extended)
        return {"due": 1, "due_closed": int(self.closed),
                "due_on_time": int(self.closed and not self.late and assessable), "assessable": int(assessable),
                "due_suspended": int(self.suspended), "due_extended": int(self.extended)}


@dataclass(frozen=True)
class Count:
    day: date
    counter: str                # a COUNTERS name, or "stage:<stage>:due" / "stage:<stage>:on_time"
    n: int = 1


@dataclass(frozen=True)
class Duration:
    day: date
    measure: str                # a MEASURES name
    seconds: float


@dataclass(frozen=True)
class StageDone:
    """A stage clock that ended or went late: the stage facts' row."""
    case_id: str
    stage_seq: int
    stage: str
    started_at: datetime
    deadline: datetime | None
    ended_at: datetime | None   # None: its deadline passed, it is still open
    ended_by: str | None
    on_time: bool | None        # None: ended another way, never late (not counted)
    counted_at: datetime | None = None   # when it counted: its end (on time), its deadline then (late); None: not now


@dataclass(frozen=True)
class Folded:
    facts: CaseFacts
    counts: tuple[Count, ...] = ()
    durations: tuple[Duration, ...] = ()
    stages: tuple[StageDone, ...] = ()


def stage_counter(stage: str, what: str) -> str:
    return f"stage:{stage}:{what}"


def deadline_passed(facts: CaseFacts, now: datetime) -> Folded:
    """The running stage's deadline has passed by `now` with nobody having ended it: it is counted
    late on its deadline's day, and the case is overdue (due to close, unless it was only waiting
    to be registered)."""
    if facts.stage is None or facts.stage_late or facts.stage_deadline is None or facts.stage_deadline >= now:
        return Folded(facts)
    at = facts.stage_deadline
    day = city_day(at)
    counts = [Count(day, stage_counter(facts.stage, "due"))]
    if not facts.late:
        counts.append(Count(day, "went_overdue"))
    after = replace(facts, stage_late=True, late=True)
    if facts.stage != "register" and after.due_day is None:
        after = replace(after, due_day=day)
    counts.extend(_cohort_change(facts, after))
    done = StageDone(facts.case_id, facts.stage_seq, facts.stage, facts.stage_started_at or at, at, None, None, False,
                     counted_at=at)
    return Folded(after, tuple(counts), (), (done,))


def fold(facts: CaseFacts, event: CaseEvent) -> Folded:
    """The facts after one more event of the case (events come in the order of their ids)."""
    if event.id <= facts.last_event_id:
        return Folded(facts)                    # folded already (a replay after a crash)
    passed = deadline_passed(facts, event.time)
    before = passed.facts
    now, day, command, detail = event.time, city_day(event.time), event.command, event.detail
    counts: list[Count] = list(passed.counts)
    durations: list[Duration] = []
    stages: list[StageDone] = list(passed.stages)
    f = replace(before, last_event_id=event.id)

    # the stage that ends with this event: a new clock starts (the event names it) or none runs
    new_stage = detail.get("stage")
    ends_stage = before.stage is not None and (new_stage is not None or event.to_state in STOPPED)
    if ends_stage:
        # done by its own step: counted on time; counted late on its deadline's day already; or not counted
        on_time = False if before.stage_late else True if command in FORWARD[before.stage] else None
        if on_time:
            counts += [Count(day, stage_counter(before.stage, w)) for w in ("due", "on_time")]
        stages.append(StageDone(f.case_id, before.stage_seq, before.stage, before.stage_started_at or now,
                                before.stage_deadline, now, command, on_time, counted_at=now if on_time else None))
        f = replace(f, stage=None, stage_started_at=None, stage_deadline=None, stage_late=False)
    if new_stage is not None:
        f = replace(f, stage=new_stage, stage_seq=before.stage_seq + 1, stage_started_at=now,
                    stage_deadline=_time(detail.get("deadline")), stage_late=False)

    # what the step itself counts
    if command == "open" and event.to_state == State.REGISTERED or command == "register":
        counts.append(Count(day, "registered"))
        f = replace(f, registered_at=now)
        if command == "register":
            durations.append(Duration(day, "register", (now - f.opened_at).total_seconds()))
    elif command == "dispatch":
        counts.append(Count(day, "dispatched"))
        if f.dispatched_at is None and f.registered_at is not None:
            durations.append(Duration(day, "dispatch", (now - f.registered_at).total_seconds()))
        f = replace(f, dispatched_at=now, handler=detail.get("handler") or f.handler)
    elif command == "accept":
        if f.dispatched_at is not None:
            durations.append(Duration(day, "accept", (now - f.dispatched_at).total_seconds()))
        f = replace(f, accepted_at=now)
    elif command == "feedback":
        counts.append(Count(day, "handled"))
        if f.handled_at is None:
            if f.accepted_at is not None:
                durations.append(Duration(day, "handle", (now - f.accepted_at).total_seconds()))
            f = replace(f, handled_at=now, due_day=f.due_day or day)
    elif command == "verify" and detail.get("passed") is False:
        counts.append(Count(day, "reworked"))
    elif command == "return":
        counts.append(Count(day, "returned"))
    elif command == "close":
        counts.append(Count(day, "closed"))
        if f.closed_at is None:
            durations.append(Duration(day, "close", (now - (f.registered_at or f.opened_at)).total_seconds()))
            f = replace(f, closed_at=now)
        f = replace(f, closed=True)
    elif command == "refuse":
        counts.append(Count(day, "refused"))
        f = replace(f, refused=True)
    elif command == "reopen":
        counts.append(Count(day, "reopened"))
        f = replace(f, closed=False)
    elif command == "decide_extension" and detail.get("approved"):
        counts.append(Count(day, "extensions"))
        f = replace(f, extended=True, stage_deadline=_time(detail.get("deadline")) or f.stage_deadline)
    elif command == "suspend":
        counts.append(Count(day, "suspensions"))
        f = replace(f, suspended=True)
    counts.extend(_cohort_change(before, f))
    return Folded(f, tuple(counts), tuple(durations), tuple(stages))


def fold_all(facts: CaseFacts, events: Iterable[CaseEvent], now: datetime | None = None) -> Folded:
    """Every event in turn (and, given `now`, the deadline that passed since the last), gathered."""
    counts: list[Count] = []
    durations: list[Duration] = []
    stages: list[StageDone] = []
    for event in events:
        step = fold(facts, event)
        facts = step.facts
        counts += step.counts
        durations += step.durations
        stages += step.stages
    if now is not None:
        step = deadline_passed(facts, now)
        facts = step.facts
        counts += step.counts
        stages += step.stages
    return Folded(facts, tuple(counts), tuple(durations), tuple(stages))


def _cohort_change(before: CaseFacts, after: CaseFacts) -> list[Count]:
    """The change of the case's cohort counters, on its cohort's day (±1 each)."""
    old, new = before.cohort, after.cohort
    changes: list[Count] = []
    if before.due_day == after.due_day:
        for counter in COHORT_COUNTERS:
            delta = new.get(counter, 0) - old.get(counter, 0)
            if delta:
                changes.append(Count(after.due_day, counter, delta))
        return changes
    for counter, n in old.items():              # (a case never leaves one cohort for another, but be exact)
        if n:
            changes.append(Count(before.due_day, counter, -n))
    for counter, n in new.items():
        if n:
            changes.append(Count(after.due_day, counter, n))
    return changes


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None

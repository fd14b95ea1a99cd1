"""A person's work on a case, from the screens: each command of cases.machine as a dashboard
command (dashboard/commands.py's path: located, authorized for the case's org unit, applied by the
pure machine to the row locked in the command's transaction, written with its events and the
notices for terminals, audited, then told to the screens), and a case a dispatcher enters by hand
(a 12345 hotline call, a walk-in).

The machine decides again inside the transaction: the screen offered what `offered` said, but the
case may have moved on since (a handler accepted it meanwhile); the refusal says so.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import ClassVar

from cases import store
from cases.limits import ANY, Limit, Stage, Unit, Urgency, categories
from cases.machine import SCREEN_ROLES, Refusal, Rules, allowed, apply, open_case
from cases.model import Actor, ActorKind, Case, Command, Dispatch, Return, Source
from cases.notices import Recipients
from cases.offers import OfferPolicy
from cases.tell import case_change
from core import freetext
from core.catalogue import CASE_CATEGORY_LABELS, AuditAction
from core.roles import UserRole
from dashboard.authz import Identity
from dashboard.commands import Action, Commands, Refused, Target, Written
from dispatch.candidates import visible

CASE_ACTIONS: dict[type, Action] = {command: Action(AuditAction.of_case(command.name),
                                                    frozenset(UserRole(r) for r in roles))
                                    for command, roles in SCREEN_ROLES.items()}
OPEN_CASE = Action(AuditAction.CASE_OPEN, frozenset({UserRole.DISPATCHER, UserRole.ADMIN}))
# a return and a dispatch in one step (one transaction): who may do both
REASSIGN = Action(AuditAction.CASE_REASSIGN, CASE_ACTIONS[Return].roles & CASE_ACTIONS[Dispatch].roles)
RULES_EVERY_S = 30.0        # the time limits and the calendar are read again this often


class CaseRules:
    """The rules (cases.store.load_rules), read at most every RULES_EVERY_S, and who hears of a
    change (cases.notices.Recipients)."""

    def __init__(self, ctx: Commands, time_scale: float = 1.0, warn_fraction: float = 0.8,
                 policy: OfferPolicy = OfferPolicy()) -> None:
        self.ctx = ctx
        self.policy = policy            # how a dispatch's offer times out (cases.offers)
        self.time_scale = time_scale
        self.warn_fraction = warn_fraction
        self.recipients = Recipients(ctx.city)
        self._rules: Rules | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def rules(self, cur) -> Rules:
        with self._lock:
            if self._rules is None or time.monotonic() - self._at > RULES_EVERY_S:
                self._rules = store.load_rules(cur, warn_fraction=self.warn_fraction, time_scale=self.time_scale)
                self._at = time.monotonic()
            return self._rules

    def forget(self) -> None:
        with self._lock:
            self._rules = None


def actor_of(who: Identity) -> Actor:
    return Actor(ActorKind.USER, who.user, frozenset(r.value for r in who.roles), who.scope_code)


def offered(case: Case, who: Identity) -> list[type]:
    """The commands the screen offers this person for this case now (of those a person gives)."""
    return [c for c in allowed(case, actor_of(who)) if c in CASE_ACTIONS]


def case_summary(case: Case) -> str:
    return f"{case.case_id} · {CASE_CATEGORY_LABELS.get(case.category, case.category)} · {case.place or case.title}"


@dataclass(frozen=True)
class CaseAction:
    """One command on one case (cases.model's commands a person gives)."""
    case_id: str
    command: Command
    rules: CaseRules

    @property
    def action(self) -> Action:
        return CASE_ACTIONS[type(self.command)]

    @property
    def target_key(self) -> str:
        return f"case:{self.case_id}"

    def locate(self, ctx: Commands) -> Target | None:
        case = ctx.case(self.case_id)
        return None if case is None else Target(self.target_key, case.org_code, case_summary(case), ctx)

    @property
    def steps(self) -> tuple[Command, ...]:
        return (self.command,)

    def check(self, case: Case) -> None:
        """What the command itself cannot know: raise Refused."""

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        ctx: Commands = target.subject
        case = store.load(cur, self.case_id)          # locked until the commit
        if case is None:
            raise Refused(f"there is no case {self.case_id}")
        self.check(case)
        rules = self.rules.rules(cur)
        changed, outcomes = case, []
        for step in self.steps:                       # each decided on the case as the one before left it
            if isinstance(step, Dispatch):
                _check_handler(ctx, who, step.handler)
            outcome = apply(changed, step, actor_of(who), now, rules)
            if isinstance(outcome, Refusal):
                raise Refused(outcome.reason)
            changed = outcome.case
            outcomes.append(outcome)
        store.save(cur, changed, rules)
        store.record(cur, outcomes, self.rules.recipients, self.rules.policy)
        detail = {k: v for o in outcomes for k, v in o.events[0].detail.items()
                  if isinstance(v, (str, int, float, bool))}
        return Written(_facts(case), {**_facts(changed), **detail}, (case_change(changed, ctx.city),),
                       reply=changed.case_id)


@dataclass(frozen=True)
class Reassign(CaseAction):
    """Take a case from its handler and offer it to another member, in one step (one transaction:
    the old handler is told it is withdrawn, the new one is offered it)."""
    reason: str = "reassigned by the dispatcher"

    @property
    def action(self) -> Action:
        return REASSIGN

    @property
    def steps(self) -> tuple[Command, ...]:
        return (Return(self.reason), self.command)

    def check(self, case: Case) -> None:
        if not isinstance(self.command, Dispatch):
            raise Refused("a reassignment is a dispatch to another member")
        if case.handler == self.command.handler:
            raise Refused("the case is already theirs")


def _check_handler(ctx: Commands, who: Identity, terminal_id: str) -> None:
    """A handler is a member the dispatcher may be shown as a candidate (dispatch.candidates.visible:
    the one rule); a refusal names nothing beyond the dispatcher's scope."""
    if terminal_id not in ctx.city.member_by_terminal:
        raise Refused(f"{terminal_id} is not a member's terminal")
    if not visible(ctx.city, who.scope_code or "", terminal_id):
        raise Refused(f"{terminal_id} is outside {who.user}'s scope")


def _facts(case: Case) -> dict:
    return {"state": case.state.value, "handler": case.handler,
            "deadline": case.deadline.isoformat() if case.deadline else None}


@dataclass(frozen=True)
class OpenHotlineCase:
    """A case a dispatcher enters by hand: registered at once, its clock running."""
    action: ClassVar[Action] = OPEN_CASE
    category: str
    urgency: str
    org_code: str                 # a grid, or a higher org unit when the place is not a grid's
    title: str
    place: str
    rules: CaseRules
    note: str = ""

    @property
    def target_key(self) -> str:
        return "case:new"

    def locate(self, ctx: Commands) -> Target | None:
        return Target(self.target_key, self.org_code, f"{CASE_CATEGORY_LABELS.get(self.category, self.category)} · "
                                                      f"{ctx.where(self.org_code)}", ctx)

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        ctx: Commands = target.subject
        try:
            title = freetext.clean(self.title, freetext.LINE, "a case's title (what is wrong)", required=True)
            place = freetext.clean(self.place, freetext.LINE, "a place")
            note = freetext.clean(self.note, freetext.NOTE, "a case's note")
        except ValueError as bad:
            raise Refused(str(bad)) from None
        try:
            urgency = Urgency(self.urgency)
        except ValueError:
            raise Refused(f"urgency is urgent or normal, not {self.urgency!r}") from None
        grid = ctx.city.grid_by_code.get(self.org_code)
        point = grid.boundary.representative_point() if grid is not None else None
        rules = self.rules.rules(cur)
        case_id = store.next_case_id(cur, now)
        outcome = open_case(case_id, self.category, urgency, Source.HOTLINE, grid.code if grid else None,
                            self.org_code, actor_of(who), now, rules, title=title,
                            place=place or ctx.where(self.org_code), detail={"note": note} if note else None,
                            lat=point.y if point else None, lon=point.x if point else None)
        if isinstance(outcome, Refusal):
            raise Refused(outcome.reason)
        store.insert(cur, outcome.case, rules)
        store.record(cur, [outcome], self.rules.recipients)
        return Written(None, {**_facts(outcome.case), "category": self.category, "org_code": self.org_code},
                       (case_change(outcome.case, ctx.city),), reply=case_id)


# --- the rules: time limits and the working calendar (admins of the whole city) ------------------------

NEW_LIMITS = Action(AuditAction.TIME_LIMITS_VERSION, frozenset({UserRole.ADMIN}))
SET_CALENDAR_DAY = Action(AuditAction.CALENDAR_DAY, frozenset({UserRole.ADMIN}))


def limit_spec(limit: Limit) -> str:
    """A limit as an admin types it: 30m, 2h, 5wh, 1wd."""
    if limit.unit is Unit.MINUTES:
        return f"{limit.amount / 60:g}h" if limit.amount % 60 == 0 else f"{limit.amount:g}m"
    return f"{limit.amount:g}{'wh' if limit.unit is Unit.WORKING_HOURS else 'wd'}"


@dataclass(frozen=True)
class NewLimitsVersion:
    """A new version of the time limits: the current one with one row changed (or added). Cases
    that started under an older version keep theirs; new stage clocks of new cases use this one."""
    action: ClassVar[Action] = NEW_LIMITS
    category: str                 # a category, or "*" for any
    stage: str
    urgency: str                  # urgent, normal, or "*"
    spec: str                     # 30m, 2h, 5wh, 1wd
    rules: CaseRules

    @property
    def target_key(self) -> str:
        return f"time_limits:{self.category}/{self.stage}/{self.urgency}"

    def locate(self, ctx: Commands) -> Target | None:
        label = CASE_CATEGORY_LABELS.get(self.category, self.category)
        return Target(self.target_key, "", f"{label} · {self.stage} · {self.urgency} → {self.spec}")

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        try:
            limit = Limit.parse(self.spec)
            stage = Stage(self.stage)
        except ValueError as bad:
            raise Refused(str(bad)) from None
        if self.category != ANY and self.category not in categories():
            raise Refused(f"{self.category!r} is not a category")
        if self.urgency not in (ANY, *(u.value for u in Urgency)):
            raise Refused(f"urgency is urgent, normal or *, not {self.urgency!r}")
        cur.execute("select pg_advisory_xact_lock(hashtext('time_limits'))")  # one new version at a time
        cur.execute("select max(version) from time_limits")
        current = cur.fetchone()[0]
        cur.execute("select amount, unit from time_limits where version = %s and category = %s and stage = %s "
                    "and urgency = %s", (current, self.category, stage.value, self.urgency))
        before = cur.fetchone()
        if before is not None and Limit(before[0], Unit(before[1])) == limit:
            raise Refused(f"version {current} has that limit already")
        cur.execute("insert into time_limits (version, category, stage, urgency, amount, unit, created_by) "
                    "select %s, category, stage, urgency, amount, unit, %s from time_limits where version = %s "
                    "and not (category = %s and stage = %s and urgency = %s)",
                    (current + 1, who.user, current, self.category, stage.value, self.urgency))
        cur.execute("insert into time_limits (version, category, stage, urgency, amount, unit, created_by) "
                    "values (%s, %s, %s, %s, %s, %s, %s)", (current + 1, self.category, stage.value, self.urgency,
                                                            limit.amount, limit.unit.value, who.user))
        self.rules.forget()
        old = limit_spec(Limit(before[0], Unit(before[1]))) if before else None
        return Written({"version": current, "limit": old}, {"version": current + 1, "limit": limit_spec(limit)},
                       reply=str(current + 1))


@dataclass(frozen=True)
class SetCalendarDay:
    """An admin's word on one day: a workday or not (a make-up working Saturday, a holiday the
    library does not know yet, a local day off), with its name."""
    action: ClassVar[Action] = SET_CALENDAR_DAY
    day: date
    workday: bool
    name: str
    rules: CaseRules

    @property
    def target_key(self) -> str:
        return f"calendar:{self.day.isoformat()}"

    def locate(self, ctx: Commands) -> Target | None:
        kind = "workday" if self.workday else "day off"
        return Target(self.target_key, "", f"{self.day.isoformat()} · {kind} · {self.name or '–'}")

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        try:
            name = freetext.clean(self.name, freetext.NAME, "a day's name")
        except ValueError as bad:
            raise Refused(str(bad)) from None
        if len(name) > 60:
            raise Refused("a day's name has at most 60 characters")
        cur.execute("select workday, name, source from work_calendar where day = %s for update", (self.day,))
        before = cur.fetchone()
        if before is not None and before[0] == self.workday and before[1] == name and before[2] == "admin":
            raise Refused(f"{self.day.isoformat()} is set so already")
        cur.execute("insert into work_calendar (day, workday, name, source, updated_at, updated_by) "
                    "values (%s, %s, %s, 'admin', %s, %s) on conflict (day) do update set workday = excluded.workday, "
                    "name = excluded.name, source = 'admin', updated_at = excluded.updated_at, "
                    "updated_by = excluded.updated_by", (self.day, self.workday, name, now, who.user))
        self.rules.forget()
        return Written(None if before is None else {"workday": before[0], "name": before[1], "source": before[2]},
                       {"workday": self.workday, "name": name, "source": "admin"})

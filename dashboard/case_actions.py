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
from datetime import datetime
from typing import ClassVar

from cases import store
from cases.limits import Urgency
from cases.machine import SCREEN_ROLES, Refusal, Rules, allowed, apply, open_case
from cases.model import Actor, ActorKind, Case, Command, Dispatch, Source
from cases.notices import Recipients
from cases.tell import case_change
from dashboard.authz import Identity, UserRole
from dashboard.commands import Action, Commands, Refused, Target, Written
from telemetry.catalogue import CASE_CATEGORY_LABELS
from telemetry.orgcodes import contains

CASE_ACTIONS: dict[type, Action] = {command: Action(f"case.{command.name}", frozenset(UserRole(r) for r in roles))
                                    for command, roles in SCREEN_ROLES.items()}
OPEN_CASE = Action("case.open", frozenset({UserRole.DISPATCHER, UserRole.ADMIN}))
RULES_EVERY_S = 30.0        # the time limits and the calendar are read again this often


class CaseRules:
    """The rules (cases.store.load_rules), read at most every RULES_EVERY_S, and who hears of a
    change (cases.notices.Recipients)."""

    def __init__(self, ctx: Commands, time_scale: float = 1.0, warn_fraction: float = 0.8) -> None:
        self.ctx = ctx
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

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        ctx: Commands = target.subject
        case = store.load(cur, self.case_id)          # locked until the commit
        if case is None:
            raise Refused(f"there is no case {self.case_id}")
        if isinstance(self.command, Dispatch):
            _check_handler(ctx, who, self.command.handler)
        rules = self.rules.rules(cur)
        outcome = apply(case, self.command, actor_of(who), now, rules)
        if isinstance(outcome, Refusal):
            raise Refused(outcome.reason)
        store.save(cur, outcome.case, rules)
        store.record(cur, [outcome], self.rules.recipients)
        changed = outcome.case
        return Written(_facts(case), {**_facts(changed), **{k: v for k, v in outcome.events[0].detail.items()
                                                            if isinstance(v, (str, int, float, bool))}},
                       (case_change(changed, ctx.city),), reply=changed.case_id)


def _check_handler(ctx: Commands, who: Identity, terminal_id: str) -> None:
    member = ctx.city.member_by_terminal.get(terminal_id)
    if member is None:
        raise Refused(f"{terminal_id} is not a member's terminal")
    if who.scope_code and not contains(who.scope_code, member.grid_code):
        raise Refused(f"{member.name} works in {ctx.where(member.grid_code)}, outside {who.user}'s scope")


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
        title, place = self.title.strip(), self.place.strip()
        if not title:
            raise Refused("a case needs a title: what is wrong")
        if len(self.note) > 2000:
            raise Refused("a note has at most 2000 characters")
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
                            place=place or ctx.where(self.org_code), detail={"note": self.note} if self.note else None,
                            lat=point.y if point else None, lon=point.x if point else None)
        if isinstance(outcome, Refusal):
            raise Refused(outcome.reason)
        store.insert(cur, outcome.case, rules)
        store.record(cur, [outcome], self.rules.recipients)
        return Written(None, {**_facts(outcome.case), "category": self.category, "org_code": self.org_code},
                       (case_change(outcome.case, ctx.city),), reply=case_id)

"""The cases engine (`python -m casework` runs it): the intake, and the escalation ladder of every open case.

One loop: take the inbox (cases.intake); fire the ladder steps that are due; sleep until the next
stored `next_escalation_at`, or until PostgreSQL says something changed (LISTEN `case_inbox`,
`case_changed`), at most `MAX_SLEEP_S`. All its state is in PostgreSQL, so it may be killed at any
moment and restarted (it catches up: each step that fell due meanwhile fires once), and two engines
may run at once: due cases are taken with `FOR UPDATE SKIP LOCKED`, and a step fired is a row whose
key is the step itself (`case_escalations`), so none fires twice.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from psycopg2.extras import execute_values

from cases import listening, store
from cases.escalation import Firing, Position, due
from cases.intake import Intake
from cases.machine import Applied, Refusal, Rules, apply
from cases.model import Actor, Case, Dispatch, Escalate, Event, OfferExpired, State
from cases.notices import Recipients
from cases.offers import Clock, OfferPolicy, wall_clock

log = logging.getLogger(__name__)
ESCALATION = Actor.system("escalation")
OFFERS = Actor.system("automatic dispatch")
MAX_SLEEP_S = 30.0          # even with nothing due, look again this often (a lost notification costs this)
RULES_EVERY_S = 60.0        # the time limits and the calendar are read again this often
BATCH = 500


@dataclass
class Fired:
    rows: int = 0                                      # due cases looked at
    changed: list[Applied] = field(default_factory=list)
    firings: list[tuple[str, Firing]] = field(default_factory=list)
    lag_s: list[float] = field(default_factory=list)   # how late each step fired after it fell due


def escalate_due(conn, rules: Rules, now: datetime, recipients: Recipients, limit: int = BATCH) -> Fired:
    """One transaction: the cases whose next step is due, each step fired once, and the terminals
    told (the outbox)."""
    fired = Fired()
    with conn, conn.cursor() as cur:
        cur.execute(f"select {', '.join(store.CASE_COLUMNS)}, ladder_seq, ladder_step, ladder_repeat from cases "
                    "where next_escalation_at <= %s order by next_escalation_at limit %s for update skip locked",
                    (now, limit))
        rows = cur.fetchall()
        fired.rows = len(rows)
        planned = []
        for row in rows:
            case = store.from_row(row[:len(store.CASE_COLUMNS)])
            position = Position(*row[len(store.CASE_COLUMNS):])
            planned.append((case, due(case, store.ladder_for(case) or (), position, now, rules.calendar)))
        # every step of the batch in one statement; the key is the step itself, so what another
        # engine (or this one, before a crash) fired already comes back as not new
        new = _insert_steps(cur, [(case, f) for case, result in planned for f in result.firings], now)
        for case, result in planned:
            mine = []
            for firing in result.firings:
                if (case.case_id, firing.stage_seq, firing.step, firing.repeat) not in new:
                    continue
                outcome = escalate(case, firing, now, rules)
                if isinstance(outcome, Refusal):
                    log.error("escalation of %s refused: %s", case.case_id, outcome.reason)
                    continue
                case = outcome.case
                mine.extend(outcome.events)
                fired.firings.append((case.case_id, firing))
                fired.lag_s.append((now - firing.due_at).total_seconds())
            store.save(cur, case, rules, result.position, notify=False)   # not a change to wake ourselves for
            if mine:
                fired.changed.append(Applied(case, tuple(mine)))
        store.record(cur, fired.changed, recipients)
    return fired


def escalate(case: Case, firing: Firing, now: datetime, rules: Rules) -> Applied | Refusal:
    """The case after one ladder step fired at `now`: the Escalate command, given by the engine
    (pure; the history generator fires its steps with it too)."""
    return apply(case, Escalate(firing.stage_seq, firing.step, firing.repeat, firing.level.value, firing.org_code),
                 ESCALATION, now, rules)


ESCALATION_COLUMNS = ("case_id", "stage_seq", "step", "repeat", "stage", "level", "org_code", "due_at", "fired_at")


def escalation_row(case: Case, firing: Firing, fired_at: datetime) -> tuple:
    """The case_escalations row of a step fired (ESCALATION_COLUMNS): its key is the step itself."""
    return (case.case_id, firing.stage_seq, firing.step, firing.repeat, case.stage.value, firing.level.value,
            firing.org_code, firing.due_at, fired_at)


def _insert_steps(cur, steps: list, now: datetime) -> set[tuple]:
    """The escalation rows of the steps, in one statement; the keys of those that were new."""
    if not steps:
        return set()
    rows = execute_values(
        cur, f"insert into case_escalations ({', '.join(ESCALATION_COLUMNS)}) values %s on conflict do nothing "
             "returning case_id, stage_seq, step, repeat",
        [escalation_row(case, f, now) for case, f in steps], fetch=True, page_size=len(steps))
    return {tuple(r) for r in rows}


def expire_offers(conn, rules: Rules, now: datetime, recipients: Recipients, policy: OfferPolicy,
                  limit: int = 200) -> list[Applied]:
    """One transaction: the offers not accepted in time expire (the case goes back to registration)."""
    changed: list[Applied] = []
    with conn, conn.cursor() as cur:
        cur.execute("select id, case_id, terminal_id, offered_at from case_offers where outcome is null "
                    "and expires_at <= %s order by expires_at limit %s for update skip locked", (now, limit))
        for offer_id, case_id, terminal_id, offered_at in cur.fetchall():
            case = store.load(cur, case_id)
            if case is None or case.state is not State.DISPATCHED or case.handler != terminal_id:
                cur.execute("update case_offers set outcome = 'withdrawn', decided_at = %s where id = %s",
                            (now, offer_id))
                continue
            waited = (now - offered_at).total_seconds() / 60
            outcome = apply(case, OfferExpired(f"not accepted within {waited:.0f} min of the offer"), OFFERS, now,
                            rules)
            if isinstance(outcome, Refusal):
                log.error("expiring the offer of %s refused: %s", case_id, outcome.reason)
                continue
            store.save(cur, outcome.case, rules)
            changed.append(outcome)
        store.record(cur, changed, recipients, policy)
    return changed


def _unassigned(cur, case: Case, now: datetime, why: str, offers: int, rules: Rules) -> Applied:
    """The case flagged unassigned (its offers ran out, or nobody can take it): a dispatcher's now."""
    flagged = Applied(replace(case, unassigned=True), (Event(case.case_id, now, "unassigned", OFFERS, case.state,
                                                             case.state, why, {"offers": offers}),))
    store.save(cur, flagged.case, rules)
    store.add_events(cur, flagged.events)
    return flagged


def dispatch_automatic(conn, rules: Rules, now: datetime, recipients: Recipients, policy: OfferPolicy,
                       pick: Callable[[object, Case, frozenset[str]], object | None], categories: frozenset[str],
                       limit: int = 100) -> list[Applied]:
    """One transaction: the registered cases of the categories in automatic mode that wait for an
    offer (never offered, or returned: no offer open or waiting to be followed), each offered to
    its first available candidate not offered it before (the expiries and rejections then go on as
    for every offer: follow_offers), or, the tries spent or nobody near, flagged unassigned for a
    dispatcher."""
    changed: list[Applied] = []
    if not categories:
        return changed
    with conn, conn.cursor() as cur:
        cur.execute(f"select {', '.join(store.CASE_COLUMNS)} from cases where state = %s and not unassigned "
                    "and category = any(%s) and not exists (select 1 from case_offers o "
                    "where o.case_id = cases.case_id and (o.outcome is null "
                    "or (o.outcome in ('rejected', 'expired') and not o.followed))) "
                    "order by opened_at limit %s for update skip locked",
                    (State.REGISTERED.value, sorted(categories), limit))
        for row in cur.fetchall():
            case = store.from_row(row)
            cur.execute("select terminal_id from case_offers where case_id = %s", (case.case_id,))
            offered = frozenset(t for (t,) in cur.fetchall())
            spent = len(offered) >= policy.tries
            candidate = pick(cur, case, offered) if case.lat is not None and not spent else None
            if candidate is None:
                why = (f"automatic mode: {len(offered)} offers, none kept" if spent
                       else "automatic mode: no available member near it" if case.lat is not None
                       else "automatic mode: the case has no place")
                changed.append(_unassigned(cur, case, now, why, len(offered), rules))
                continue
            outcome = apply(case, Dispatch(candidate.terminal_id, candidate.grid_code, rank=len(offered) + 1,
                                           why=f"automatic mode, {candidate.reason}"), OFFERS, now, rules)
            if isinstance(outcome, Refusal):
                log.error("the automatic offer of %s refused: %s", case.case_id, outcome.reason)
                continue
            store.save(cur, outcome.case, rules)
            store.record(cur, [outcome], recipients, policy)
            changed.append(outcome)
    return changed


def follow_offers(conn, rules: Rules, now: datetime, recipients: Recipients, policy: OfferPolicy,
                  pick: Callable[[object, Case, frozenset[str]], object | None], limit: int = 100) -> list[Applied]:
    """One transaction: each rejected or expired offer followed by an offer to the next available
    candidate (`pick(cur, case, offered)`), or, the tries spent or nobody there, the case flagged
    unassigned for a dispatcher."""
    changed: list[Applied] = []
    with conn, conn.cursor() as cur:
        cur.execute("select id, case_id from case_offers where outcome in ('rejected', 'expired') and not followed "
                    "order by decided_at limit %s for update skip locked", (limit,))
        for offer_id, case_id in cur.fetchall():
            cur.execute("update case_offers set followed = true where id = %s", (offer_id,))
            case = store.load(cur, case_id)
            if case is None or case.state is not State.REGISTERED:
                continue                    # someone acted meanwhile
            cur.execute("select terminal_id from case_offers where case_id = %s", (case_id,))
            offered = [t for (t,) in cur.fetchall()]
            candidate = pick(cur, case, frozenset(offered)) if len(offered) < policy.tries else None
            if candidate is None:
                why = (f"{len(offered)} offers, none accepted" if len(offered) >= policy.tries
                       else "no available member near it")
                changed.append(_unassigned(cur, case, now, why, len(offered), rules))
                continue
            outcome = apply(case, Dispatch(candidate.terminal_id, candidate.grid_code, rank=len(offered) + 1,
                                           why=candidate.reason), OFFERS, now, rules)
            if isinstance(outcome, Refusal):
                log.error("the next offer of %s refused: %s", case_id, outcome.reason)
                continue
            store.save(cur, outcome.case, rules)
            store.record(cur, [outcome], recipients, policy)
            changed.append(outcome)
    return changed


def next_due(conn) -> datetime | None:
    """The next stored time the engine has something to do: an escalation step, an offer's expiry."""
    with conn, conn.cursor() as cur:
        cur.execute("select least((select min(next_escalation_at) from cases where next_escalation_at is not null), "
                    "(select min(expires_at) from case_offers where outcome is null))")
        return cur.fetchone()[0]


class Engine:
    def __init__(self, dsn: str, intake: Intake, load_rules: Callable[[object], Rules],
                 on_change: Callable[[list[Applied]], None] = lambda changed: None,
                 clock: Clock = wall_clock,
                 policy: OfferPolicy = OfferPolicy(),
                 pick: Callable[[object, Case, frozenset[str]], object | None] | None = None,
                 automatic: frozenset[str] = frozenset()) -> None:
        self.dsn = dsn
        self.intake = intake
        self.load_rules = load_rules
        self.on_change = on_change          # after each commit: the live bus, the terminals
        self.clock = clock                  # the time now (cases.offers.Clock): a test moves it forward
        self.policy = policy                # offers: their timeouts and tries (cases.offers)
        self.pick = pick                    # the next candidate for a case (dispatch.candidates); None: nobody
        self.automatic = automatic          # the categories it dispatches itself once registered
        self.stop_event = threading.Event()
        self.counts = dict.fromkeys(("opened", "merged", "linked", "skipped", "failed", "held", "applied", "refused",
                                     "escalations", "offers_expired", "offers_followed", "offers_automatic"), 0)
        self.lags: list[float] = []
        self._rules: Rules | None = None
        self._rules_at = 0.0
        self._rules_lock = threading.Lock()
        self.heartbeat = time.monotonic()     # the loop was here (the health check's)

    def rules(self, conn) -> Rules:
        with conn, conn.cursor() as cur:
            return self.rules_for(cur)

    def rules_for(self, cur) -> Rules:
        """The rules, read again on this cursor when RULES_EVERY_S has passed (any thread)."""
        with self._rules_lock:
            if self._rules is None or time.monotonic() - self._rules_at > RULES_EVERY_S:
                self._rules = self.load_rules(cur)
                self._rules_at = time.monotonic()
            return self._rules

    def run(self) -> None:
        """Until stopped (a failure: logged, and the loop starts again on fresh connections)."""
        log.info("cases engine started")
        listening.keep_running(self._loop, self.stop_event, "the cases engine's loop")

    def _loop(self) -> None:
        with listening.work_and_listen(self.dsn, "gcc-cases", ("case_inbox", "case_changed")) as (conn, listener):
            while not self.stop_event.is_set():
                self.once(conn)
                self._sleep(listener, next_due(conn))

    def once(self, conn) -> None:
        """Everything there is to do now: the inbox until it is empty, then the due steps."""
        self.heartbeat = time.monotonic()
        rules = self.rules(conn)
        while True:
            taken = self.intake.take(conn, rules, self.clock())
            for name in ("opened", "merged", "linked", "skipped", "failed", "held", "applied", "refused"):
                self.counts[name] += getattr(taken, name)
            if taken.changed:
                self.on_change(taken.changed)
            if taken.rows - taken.failed == 0:
                break
        while True:
            fired = escalate_due(conn, rules, self.clock(), self.intake.recipients)
            self.counts["escalations"] += len(fired.firings)
            self.lags = (self.lags + fired.lag_s)[-10_000:]
            for case_id, firing in fired.firings:
                log.info("%s escalated to the %s %s (step %d, repeat %d, due %s)", case_id, firing.level.value,
                         firing.org_code, firing.step, firing.repeat, firing.due_at.isoformat())
            if fired.changed:
                self.on_change(fired.changed)
            if fired.rows < BATCH:
                break
        expired = expire_offers(conn, rules, self.clock(), self.intake.recipients, self.policy)
        self.counts["offers_expired"] += len(expired)
        followed = follow_offers(conn, rules, self.clock(), self.intake.recipients, self.policy,
                                 self.pick or (lambda cur, case, offered: None))
        self.counts["offers_followed"] += len(followed)
        automatic = dispatch_automatic(conn, rules, self.clock(), self.intake.recipients, self.policy,
                                       self.pick or (lambda cur, case, offered: None), self.automatic)
        self.counts["offers_automatic"] += sum(1 for a in automatic if not a.case.unassigned)
        if expired or followed or automatic:
            self.on_change(expired + followed + automatic)

    def _sleep(self, listener, next_at: datetime | None) -> None:
        """Until the next step is due, or PostgreSQL notifies a change, or we are asked to stop."""
        wait = MAX_SLEEP_S
        if next_at is not None:
            wait = min(wait, max(0.0, (next_at - self.clock()).total_seconds()))
        if not listening.sleep(listener, wait, self.stop_event):
            self.heartbeat = time.monotonic()

"""The demo's simulated dispatch desk, `python -m simulator.desk` (`make demo` starts it; never production).

A demo has nobody at the screens, so without this every case would wait at registration and climb
the whole escalation ladder. The desk plays the command center's staff, through the same machine,
store and outbox as a person (its events say `demo desk`): it registers reports (a few it refuses),
dispatches to the nearest available member (candidate 1, as a dispatcher's Enter would; a member
of the case's grid when nobody is located), acknowledges SOS and alarm cases, approves most
extensions, closes verified cases and evaluates some. Each decision falls at a share of the
stage's limit drawn from the case number, so it is steady across passes: most on time, some late
(amber), a few very late (they escalate to the community and the street before someone acts). A
case whose handler has been silent for four of its limits (a terminal that lost its work) is
returned and dispatched again; one whose verification nobody came to do, verified from its photos.
The simulator plays the members (simulator/devices.py): accepting, handling, feedback, verification.

It is a process of its own, started by the local stack beside the cases engine (`python -m
casework`) with the engine's database role and Redis user: the engine is production code and
never imports the simulator. It acts through the parts the engine is built from
(`casework.build`: the rules, the nearest available member, the categories in automatic mode,
offers), and writes to the live bus as its own producer.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timezone

import psycopg2

from cases import listening, store
from cases.machine import Applied, Refusal, Rules, apply
from cases.model import (
    Acknowledge,
    Actor,
    ActorKind,
    Case,
    Close,
    Command,
    DecideExtension,
    Dispatch,
    Evaluate,
    Refuse,
    Register,
    Return,
    State,
    Verify,
    values,
)
from cases.notices import Recipients
from cases.offers import OfferPolicy
from core.city import City
from core.roles import Role, UserRole

log = logging.getLogger(__name__)
DESK = Actor(ActorKind.USER, "demo desk", frozenset({UserRole.DISPATCHER.value, UserRole.LEADER.value}), "")
EVERY_S = 2.0
REFUSE_SHARE = 0.05
REFUSE_REASONS = ("duplicate of an earlier report", "not the city's responsibility: passed to the property company",
                  "nothing found on site by the caller's description")
HANDLERS = (Role.GRID_ADMINISTRATOR, Role.GRID_COORDINATOR, Role.GRID_POLICE_OFFICER)
STALE = 4.0     # a handler silent this many limits long (a terminal that lost its work): returned, dispatched again
_WITH_HANDLER = frozenset({State.DISPATCHED, State.ACCEPTED, State.HANDLING})
ACTED_ON = frozenset(State) - {State.REFUSED, State.EVALUATED, State.SUSPENDED}   # a closed case it evaluates


def share(case_id: str, what: str) -> float:
    """A number in [0, 1) fixed by the case and the decision (the same on every pass)."""
    digest = hashlib.blake2b(f"{case_id}/{what}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2 ** 64


def when(case_id: str, what: str) -> float:
    """When in its stage the desk acts, as a share of the limit: mostly within it, 15 % late, 8 %
    very late (past the community's and the street's escalation steps)."""
    u = share(case_id, what + "/when")
    if u < 0.08:
        return 2.5 + 10 * u                     # 2.5–3.3: escalated to the street first
    if u < 0.23:
        return 1.05 + 2 * (u - 0.08)            # 1.05–1.35: overdue, escalated to the community
    return 0.15 + 0.75 * (u - 0.23) / 0.77      # 0.15–0.9: on time (some amber)


def elapsed(case: Case, now: datetime) -> float | None:
    if case.stage_started_at is None or case.deadline_original is None:
        return None
    length = (case.deadline_original - case.stage_started_at).total_seconds()
    return (now - case.stage_started_at).total_seconds() / length if length > 0 else 1.0


class Desk:
    def __init__(self, dsn: str, city: City, rules: Callable[[object], Rules],
                 on_change: Callable[[list[Applied]], None], stop_event: threading.Event,
                 policy: OfferPolicy = OfferPolicy(),
                 pick: Callable[[object, Case, frozenset[str]], object | None] | None = None,
                 automatic: frozenset[str] = frozenset()) -> None:
        self.dsn = dsn
        self.city = city
        self.automatic = automatic      # the categories the engine dispatches itself: the desk leaves them
        self.rules = rules
        self.on_change = on_change
        self.stop_event = stop_event
        self.policy = policy
        self.pick = pick                # the nearest available member (dispatch.candidates), as a dispatcher would
        self.recipients = Recipients(city)
        self.counts: dict[str, int] = {}
        self._handlers: dict[str, list[str]] = {}
        for member in city.members:
            if member.role in HANDLERS:
                self._handlers.setdefault(member.grid_code, []).append(member.terminal_id)

    def run(self) -> None:
        log.warning("the demo dispatch desk is on: it registers, dispatches and closes cases (demo only)")
        listening.keep_running(self._loop, self.stop_event, "the demo desk's pass")

    def _loop(self) -> None:
        conn = psycopg2.connect(self.dsn, application_name="gcc-cases-desk")
        try:
            while not self.stop_event.wait(EVERY_S):
                self.once(conn, datetime.now(timezone.utc))
        finally:
            conn.close()

    def once(self, conn, now: datetime) -> list[Applied]:
        """One transaction: every open case the desk would act on now (locked, skipping those
        someone else holds), decided and written."""
        changed: list[Applied] = []
        with conn, conn.cursor() as cur:
            rules = self.rules(cur)
            cur.execute(f"select {', '.join(store.CASE_COLUMNS)} from cases where state = any(%s) "
                        "and opened_at > now() - interval '2 days' order by opened_at limit 500 "
                        "for update skip locked", (values(ACTED_ON),))
            for row in cur.fetchall():
                case = store.from_row(row)
                command = self.decide(case, now)
                if isinstance(command, Dispatch) and self.pick is not None:
                    nearest = self.pick(cur, case, frozenset())
                    if nearest is not None:          # one-key dispatch: candidate 1
                        command = Dispatch(nearest.terminal_id, nearest.grid_code, rank=1, why=nearest.reason)
                if command is None:
                    continue
                outcome = apply(case, command, DESK, now, rules)
                if isinstance(outcome, Refusal):
                    log.info("the desk's %s of %s was refused: %s", command.name, case.case_id, outcome.reason)
                    continue
                store.save(cur, outcome.case, rules)
                changed.append(outcome)
                self.counts[command.name] = self.counts.get(command.name, 0) + 1
            store.record(cur, changed, self.recipients, self.policy)
        if changed:
            self.on_change(changed)
        return changed

    def decide(self, case: Case, now: datetime) -> Command | None:
        if case.source.value in ("sos", "alarm") and case.acknowledged_by is None and \
                (now - case.opened_at).total_seconds() > 20 + 60 * share(case.case_id, "ack"):
            return Acknowledge()
        if case.pending_extension is not None:
            approve = share(case.case_id, f"ext{case.extension_count}") < 0.8
            return DecideExtension(approve, "" if approve else "the limit stands: ask the property company to help")
        progress = elapsed(case, now)
        if case.state in _WITH_HANDLER and progress is not None and progress > STALE:
            return Return("no word from the handler long past the deadline: to be dispatched again")
        if case.state is State.HANDLED and progress is not None and progress > STALE:
            return Verify(True, "", ())           # no supervisor came: the desk checked the photos itself
        if case.state is State.CLOSED:
            if share(case.case_id, "rate") < 0.5 and (now - (case.closed_at or now)).total_seconds() > 30:
                return Evaluate(3 + int(3 * share(case.case_id, "stars")), "rated by the demo desk")
            return None
        if progress is None or progress < when(case.case_id, f"{case.state.value}{case.stage_seq}"):
            return None
        if case.state is State.REPORTED:
            if share(case.case_id, "refuse") < REFUSE_SHARE:
                return Refuse(REFUSE_REASONS[int(share(case.case_id, "why") * len(REFUSE_REASONS))])
            return Register()
        if case.state is State.REGISTERED:
            if case.category in self.automatic and not case.unassigned:
                return None                       # automatic mode: the engine offers it
            handlers = self._handlers.get(case.grid_code or "")
            if not handlers:
                return None
            pick = handlers[int(share(case.case_id, f"who{case.stage_seq}") * len(handlers))]
            return Dispatch(pick, case.grid_code)
        if case.state is State.VERIFIED:
            return Close()
        return None


def main(argv: list[str] | None = None) -> int:
    """The desk on the settings' database (the cases engine's role) until SIGTERM or SIGINT."""
    from casework.build import build
    from config.settings import load_settings
    from core.lifecycle import block_stop_signals, run_until_signalled
    from database.citydb import CityWatch

    block_stop_signals()      # before the city watch's thread starts (core.lifecycle)
    argparse.ArgumentParser(prog="python -m simulator.desk", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    parts = build(settings, producer="demo-desk")      # not run: the desk borrows what it is made of
    CityWatch(settings.pg_dsn, parts.intake.city).start()   # members moved while the demo runs
    desk = Desk(settings.pg_dsn, parts.intake.city, parts.rules_for, parts.on_change, parts.stop_event,
                parts.policy, parts.pick, parts.automatic)
    return run_until_signalled(desk.run, parts.stop_event)


if __name__ == "__main__":
    sys.exit(main())

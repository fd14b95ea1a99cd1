"""A reproducible history for the assessment: `python -m simulator.history --days 90 [--seed 7]`.

Backfills the city in the database (the demo's, or the big one: `python -m simulator.citygen
--scale big`) with `--days` days of cases, GPS fixes and device alarms ending now: what the
benchmark measures and what a demo with real trends shows (`make demo HISTORY_DAYS=30`).

Cases are walked through the real case machine (cases.machine) with the time limits and working
calendar in the database, so every deadline is the engine's own; each grid has a quality of work
that drifts over the period (better or worse), which decides how fast its stages go, how often its
work is reworked, extended, suspended or refused: the rankings and trends have something to show.
History keeps the rules the screens show: a stage that runs late climbs its escalation ladder as
the running cases engine would (each step fired when it falls due, by the engine's own command:
cases.engine.escalate, the same events, case_escalations rows and levels), and once escalated
someone acts (a late step comes at most LATE_AT_MOST past its deadline); a member who accepts is on
site soon (`start`: "en route" for minutes, not days). So every case finishes, or is work still in
progress at the end, on its ladder, with the position the live engine goes on from.
Their events go into case_events like the live ones, and the rollups are folded by the same code
as the cases engine's (kpis/rollup.fold_pass), with a progress bar. Fixes are members' patrols
inside their grids (one a day, `--fix-every-s`); alarms are raised and cleared by sensors.
Everything is written with COPY; the same seed gives the same rows. History alarms never reach the
case intake (their inbox rows are removed in the transaction that adds them).

Case numbers are `C<day>-H<n>` (H: history), alarm ids `hist-<n>`, so history and live data
never collide, and `--clear` removes an earlier history first.
"""
from __future__ import annotations

import argparse
import io
import logging
import math
import random
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orjson
import psycopg2
from tqdm import tqdm

from cases import store
from cases.engine import ESCALATION_COLUMNS, escalate, escalation_row
from cases.escalation import Position, due
from cases.limits import Limit, Unit, Urgency, categories
from cases.machine import Applied, Rules, apply, open_case
from cases.model import (
    Accept,
    Actor,
    ActorKind,
    Case,
    Close,
    DecideExtension,
    Dispatch,
    Evaluate,
    Event,
    Feedback,
    Refuse,
    Register,
    Reject,
    RequestExtension,
    Resume,
    Source,
    Start,
    State,
    Suspend,
    Verify,
)
from config.settings import load_settings
from core.catalogue import INCIDENT_CATEGORIES
from core.city import CITY_TZ, City, Grid
from core.roles import Role, UserRole
from database.citydb import read_city
from kpis.patrol import Patrols
from kpis.rollup import fold_pass

log = logging.getLogger(__name__)
STAFF = Actor(ActorKind.USER, "history-desk", frozenset({UserRole.DISPATCHER.value}), "")
LEADER = Actor(ActorKind.USER, "history-leader", frozenset({UserRole.LEADER.value}), "")
INTAKE = Actor.system("intake")
EXTENSION = Limit(1, Unit.WORKING_DAYS)
LATE_AT_MOST = timedelta(hours=4)       # a late stage is acted on once its ladder has climbed (district: 2 h)
TRAVEL_MIN = (20.0, 120.0)              # accepted -> on site: the median and the most, in minutes
CASE_COLUMNS = (*store.CASE_COLUMNS, "ladder_seq", "ladder_step", "ladder_repeat", "next_escalation_at")


@dataclass(frozen=True)
class Plan:
    days: int = 90
    seed: int = 7
    cases_per_grid_day: float = 1.5
    fix_every_s: float = 120.0
    patrol_min: float = 40.0
    alarms_per_sensor_day: float = 0.005
    end: datetime | None = None             # the history ends here (default: now)


@dataclass
class Written:
    cases: int = 0
    events: int = 0
    fixes: int = 0
    alarms: int = 0
    escalations: int = 0            # ladder steps fired (case_escalations rows)

    @property
    def rows(self) -> int:
        return self.cases + self.events + self.fixes + self.alarms + self.escalations


class GridWork:
    """How well a grid works on a given day: a factor on its stage times (below 1: faster than the
    limit) and the odds of rework, extension, suspension and refusal."""

    def __init__(self, rng: random.Random, days: int) -> None:
        self.start = rng.uniform(0.25, 1.5)             # a share of the limit a stage takes
        self.drift = rng.uniform(-0.5, 0.4) / max(days, 1)
        self.rework = rng.uniform(0.02, 0.2)

    def pace(self, day_index: int) -> float:
        return max(0.15, self.start + self.drift * day_index)


def _hand(rng: random.Random, members: list, grid: Grid) -> tuple[Actor | None, Actor | None]:
    """A handler for a case of the grid (any of its members but the supervisor), and its verifier."""
    handlers = [m for m in members if m.role is not Role.GRID_SUPERVISOR] or members
    supervisors = [m for m in members if m.role is Role.GRID_SUPERVISOR]
    handler = rng.choice(handlers) if handlers else None
    supervisor = supervisors[0] if supervisors else None
    return (Actor(ActorKind.TERMINAL, handler.terminal_id, frozenset({handler.role.value}), grid.code) if handler
            else None,
            Actor(ActorKind.TERMINAL, supervisor.terminal_id, frozenset({Role.GRID_SUPERVISOR.value}), grid.code)
            if supervisor and (handler is None or supervisor.terminal_id != handler.terminal_id) else None)


@dataclass
class Story:
    """A case as it stands at the end of the history, its events, the escalation steps fired
    (case_escalations rows) and where its ladder stands (what the live engine goes on from)."""
    case: Case
    events: list[Event]
    escalations: list[tuple]
    position: Position

    def row(self, rules: Rules) -> tuple:
        """The case's row (CASE_COLUMNS): its columns, its ladder position and next step, as store.save writes them."""
        position = self.position if self.position.stage_seq == self.case.stage_seq else Position(self.case.stage_seq)
        return (*store.to_row(self.case), position.stage_seq, position.step, position.repeat,
                store.next_escalation(self.case, position, rules))


def climb(story: Story, until: datetime, rules: Rules) -> None:
    """The ladder steps a running cases engine fires by `until`, each when it falls due, by the
    engine's own command (cases.engine.escalate): the case's level, its events and rows, and its
    position move on. (The engine after downtime fires one step for a gap; running, it fires each.)"""
    if story.position.stage_seq != story.case.stage_seq:
        story.position = Position(story.case.stage_seq)       # a new stage clock: its ladder from the start
    while (ladder := store.ladder_for(story.case)) is not None:
        next_at = store.next_escalation(story.case, story.position, rules)
        if next_at is None or next_at > until:         # the engine takes what is due at `until`, then the command
            return
        result = due(story.case, ladder, story.position, next_at, rules.calendar)
        for firing in result.firings:
            outcome = escalate(story.case, firing, firing.due_at, rules)
            if not isinstance(outcome, Applied):
                raise RuntimeError(f"history: escalation of {story.case.case_id} refused: {outcome.reason}")
            story.escalations.append(escalation_row(story.case, firing, firing.due_at))
            story.case = outcome.case
            story.events.extend(outcome.events)
        story.position = result.position


def case_story(rng: random.Random, rules: Rules, case_id: str, category: str, urgency: Urgency, source: Source,
               grid: Grid, opened_at: datetime, end: datetime, pace: float, rework: float,
               handler: Actor | None, supervisor: Actor | None) -> Story:
    """One case from its report to where it stands at `end`, through the real machine, its ladders
    climbed while a stage runs late."""
    opened = open_case(case_id, category, urgency, source, grid.code, grid.code, INTAKE, opened_at, rules,
                       title=category.replace("_", " "), place=grid.name)
    assert isinstance(opened, Applied), opened
    story = Story(opened.case, list(opened.events), [], Position(opened.case.stage_seq))
    now = opened_at

    def step(command, actor, at) -> bool:
        nonlocal now
        if at > end:
            return False
        climb(story, at, rules)                 # what the engine fired while the stage waited for this
        outcome = apply(story.case, command, actor, at, rules)
        if not isinstance(outcome, Applied):        # a story the machine refuses is a bug here: say so
            raise RuntimeError(f"history: {command.name} refused for {case_id} in {story.case.state.value}: "
                               f"{outcome.reason}")
        story.case, now = outcome.case, at
        story.events.extend(outcome.events)
        return True

    def later(share: float | None = None) -> datetime:
        """When the next step comes: a share of the time left on the stage clock, scattered (pace:
        how well the grid works; past 1, late, but acted on within LATE_AT_MOST of the deadline:
        its ladder has climbed to the district by then)."""
        deadline = story.case.deadline
        left = (deadline - now).total_seconds() if deadline else 3600.0
        factor = rng.lognormvariate(math.log(share if share is not None else pace), 0.6)
        at = now + timedelta(seconds=max(20.0, left * factor))
        if deadline is not None and at > deadline:   # never before now: a stage already late moves on
            at = max(now + timedelta(seconds=20), min(at, deadline + rng.uniform(0.05, 1.0) * LATE_AT_MOST))
        return at

    for _ in range(40):                         # a case's steps (a bound; no story is this long)
        case = story.case
        s = case.state
        if s is State.REPORTED:
            refuse = rng.random() < 0.03
            ok = step(Refuse("duplicate of an open case") if refuse else Register(), STAFF, later(0.3 * pace))
        elif s is State.REGISTERED:
            if handler is None:
                break
            ok = step(Dispatch(handler.name, grid.code), STAFF, later(0.4 * pace))
        elif s is State.DISPATCHED:
            ok = step(Reject("not free now") if rng.random() < 0.05 else Accept(), handler, later(0.3 * pace))
        elif s is State.ACCEPTED:                   # en route: on site within minutes
            travel = min(TRAVEL_MIN[1], rng.lognormvariate(math.log(TRAVEL_MIN[0]), 0.7))
            ok = step(Start(), handler, now + timedelta(minutes=travel))
        elif s is State.HANDLING:
            roll = rng.random()
            if case.pending_extension is not None:
                approve = rng.random() < 0.8
                ok = step(DecideExtension(approve, "" if approve else "not justified"), LEADER, later(0.2))
            elif roll < 0.02 and case.extension_count == 0:
                ok = step(RequestExtension(EXTENSION, "waiting for a part"), handler, later(0.3))
            elif roll < 0.04:
                ok = step(Suspend("waits for engineering works"), LEADER, later(0.5))
            else:
                ok = step(Feedback("done, photo attached", ("photo/history.jpg",)), handler, later())
        elif s is State.SUSPENDED:
            ok = step(Resume(), LEADER, now + timedelta(days=rng.uniform(1, 5)))
        elif s is State.HANDLED:
            failed = rng.random() < rework
            ok = step(Verify(not failed, "still not right" if failed else ""), supervisor or STAFF, later(0.4 * pace))
        elif s is State.VERIFIED:
            ok = step(Close(), STAFF, later(0.3 * pace))
        elif s is State.CLOSED and rng.random() < 0.5:
            ok = step(Evaluate(rng.choice((3, 4, 4, 5, 5))), LEADER, now + timedelta(hours=rng.uniform(1, 48)))
        else:
            break
        if not ok:
            break
    climb(story, end, rules)                    # still open at the end: on its ladder until then
    return story


def _copy(cur, table: str, columns: tuple[str, ...], rows: Iterator[tuple]) -> int:
    """COPY rows (text format) into table; returns how many."""
    buf, n = io.StringIO(), 0
    for row in rows:
        buf.write("\t".join(_cell(v) for v in row))
        buf.write("\n")
        n += 1
    buf.seek(0)
    cur.copy_expert(f"copy {table} ({', '.join(columns)}) from stdin", buf)
    return n


def _cell(v) -> str:
    if v is None:
        return r"\N"
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, (list, tuple)):
        return "{" + ",".join('"' + str(x).replace('"', '\\"') + '"' for x in v) + "}"
    if isinstance(v, dict):
        v = orjson.dumps(v, default=str).decode()
    return str(v).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def write_cases(conn, city: City, rules: Rules, plan: Plan, end: datetime, progress: bool = True) -> Written:
    """The cases and their events, a day at a time (one transaction a day)."""
    rng = random.Random(plan.seed)
    written = Written()
    work = {g.code: GridWork(rng, plan.days) for g in city.grids}
    members: dict[str, list] = defaultdict(list)
    for m in city.members:
        members[m.grid_code].append(m)
    cats = [c for c in categories() if c in INCIDENT_CATEGORIES]
    first_day = (end.astimezone(CITY_TZ) - timedelta(days=plan.days)).date()
    for day_index in tqdm(range(plan.days), desc="cases", unit="day", disable=not progress):
        day = first_day + timedelta(days=day_index + 1)
        day_start = datetime.combine(day, datetime.min.time(), CITY_TZ)
        stories, n = [], 0
        for grid in city.grids:
            count = _poisson(rng, plan.cases_per_grid_day)
            handler, supervisor = _hand(rng, members[grid.code], grid)
            for _ in range(count):
                n += 1
                opened = day_start + timedelta(hours=rng.triangular(7, 21, 10))
                if opened >= end:
                    continue
                urgency = Urgency.URGENT if rng.random() < 0.1 else Urgency.NORMAL
                stories.append(case_story(rng, rules, f"C{day:%Y%m%d}-H{n:06d}", rng.choice(cats), urgency,
                                          Source.REPORT, grid, opened, end, work[grid.code].pace(day_index),
                                          work[grid.code].rework, handler, supervisor))
        with conn, conn.cursor() as cur:
            written.cases += _copy(cur, "cases", CASE_COLUMNS, (s.row(rules) for s in stories))
            written.events += _copy(cur, "case_events", ("case_id", "time", "command", "actor_kind", "actor", "roles",
                                                         "from_state", "to_state", "reason", "detail"),
                                    ((e.case_id, e.at, e.command, e.actor.kind.value, e.actor.name,
                                      sorted(e.actor.roles), e.from_state.value if e.from_state else None,
                                      e.to_state.value, e.reason, e.detail) for s in stories for e in s.events))
            written.escalations += _copy(cur, "case_escalations", ESCALATION_COLUMNS,
                                         (r for s in stories for r in s.escalations))
    return written


def fold_everything(conn, end: datetime, progress: bool = True, batch: int = 2000) -> int:
    """Fold every dirty case into the rollups (what the cases engine does as they come)."""
    with conn.cursor() as cur:
        cur.execute("select count(distinct case_id) from kpi_dirty")
        todo = cur.fetchone()[0]
    conn.commit()
    done = 0
    with tqdm(total=todo, desc="rollups", unit="case", disable=not progress) as bar:
        while True:
            folded = fold_pass(conn, end, batch=batch).cases
            if not folded:
                return done
            done += folded
            bar.update(folded)


def write_fixes(conn, city: City, plan: Plan, end: datetime, progress: bool = True) -> int:
    """One patrol a day per member, inside its grid: a walk at 1.2 m/s, a fix every fix_every_s."""
    rng = random.Random(plan.seed + 1)
    per_patrol = max(1, int(plan.patrol_min * 60 / plan.fix_every_s))
    step_deg = 1.2 * plan.fix_every_s / 111_320
    starts = {}                                 # each grid's bounds and a point inside it (once, not per fix day)
    for g in city.grids:
        p = g.boundary.representative_point()
        starts[g.code] = (g.boundary.bounds, p.x, p.y)
    first_day = (end.astimezone(CITY_TZ) - timedelta(days=plan.days)).date()
    total = 0
    for day_index in tqdm(range(plan.days), desc="fixes", unit="day", disable=not progress):
        day = first_day + timedelta(days=day_index + 1)
        day_start = datetime.combine(day, datetime.min.time(), CITY_TZ)

        def rows(day_start=day_start):
            for m in city.members:
                (minx, miny, maxx, maxy), x, y = starts[m.grid_code]
                t = day_start + timedelta(hours=rng.uniform(8, 17))
                heading = rng.uniform(0, 2 * math.pi)
                for _ in range(per_patrol):
                    if t >= end:
                        return
                    yield (t, m.terminal_id, m.member_id, m.grid_code, round(y, 6), round(x, 6), 8.0, 1.2, "gcc")
                    heading += rng.gauss(0, 0.6)
                    x = min(max(x + step_deg * math.cos(heading) / 0.9, minx), maxx)
                    y = min(max(y + step_deg * math.sin(heading), miny), maxy)
                    t += timedelta(seconds=plan.fix_every_s)

        with conn, conn.cursor() as cur:
            total += _copy(cur, "positions", ("time", "terminal_id", "member_id", "grid_code", "lat", "lon",
                                              "accuracy_m", "speed_mps", "source"), rows())
    return total


def write_alarms(conn, city: City, plan: Plan, end: datetime, progress: bool = True) -> int:
    """Alarms raised and cleared by sensors (kept away from the case intake)."""
    rng = random.Random(plan.seed + 2)
    per_day = plan.alarms_per_sensor_day * len(city.sensors)
    kinds = ("elevator_fault", "elevator_door_fault", "gas_detector_fault", "meter_spike", "low_battery")
    start = end - timedelta(days=plan.days)
    rows, n = [], 0
    for _ in tqdm(range(plan.days), desc="alarms", unit="day", disable=not progress):
        for _ in range(_poisson(rng, per_day)):
            sensor = rng.choice(city.sensors)
            n += 1
            raised = start + timedelta(seconds=rng.uniform(0, plan.days * 86400))
            cleared = raised + timedelta(minutes=rng.uniform(5, 600))
            alarm_id = f"hist-{n}"
            for state, at in (("raised", raised), ("cleared", cleared)):
                if at < end:
                    rows.append((at, alarm_id, sensor.sensor_id, rng.choice(kinds), 2, state, sensor.gateway_id,
                                 sensor.building_id, sensor.grid_code))
    with conn, conn.cursor() as cur:
        written = _copy(cur, "device_alarms", ("time", "alarm_id", "sensor_id", "alarm_type", "severity", "state",
                                               "gateway_id", "building_id", "grid_code"), iter(rows))
        cur.execute("delete from case_inbox where kind = 'alarm' and key like '%%/hist-%%'")
    return written


def clear(conn) -> None:
    """Remove an earlier history (the H-numbered cases with their events, the hist- alarms; the
    fixes stay), and fold the rollups again from the events that remain (as the owner: the event
    log is append-only for everyone else)."""
    with conn, conn.cursor() as cur:
        cur.execute("truncate kpi_daily, kpi_durations, case_stage_facts, case_facts")
        cur.execute("alter table case_events disable trigger case_events_append_only")
        for table in ("kpi_dirty", "case_events", "case_sources", "case_offers", "case_notices", "case_escalations"):
            cur.execute(f"delete from {table} where case_id like 'C%%-H%%'")
        cur.execute("alter table case_events enable trigger case_events_append_only")
        cur.execute("delete from cases where case_id like 'C%%-H%%'")
        cur.execute("insert into kpi_dirty (case_id) select case_id from cases on conflict do nothing")
        cur.execute("delete from device_alarms where alarm_id like 'hist-%%'")


def fold_patrols(conn, city: City, start: datetime, end: datetime, progress: bool = True) -> int:
    """The patrol rows of the fixes from start to end, a day at a time (what the engine does as they come)."""
    patrols, folded = Patrols(city), 0
    first = start.astimezone(CITY_TZ).date()
    days = (end.astimezone(CITY_TZ).date() - first).days + 1
    for i in tqdm(range(days), desc="patrols", unit="day", disable=not progress):
        folded += patrols.refold_day(conn, first + timedelta(days=i))
    return folded


def refold(conn, now: datetime, progress: bool = True) -> int:
    """Fold every case's events into the rollups again, from nothing (after a change of kpis/facts.py)."""
    with conn, conn.cursor() as cur:
        cur.execute("truncate kpi_daily, kpi_durations, case_stage_facts, case_facts")
        cur.execute("insert into kpi_dirty (case_id) select case_id from cases on conflict do nothing")
    return fold_everything(conn, now, progress)


def generate(dsn: str, plan: Plan, progress: bool = True, what: frozenset[str] = frozenset({"cases", "fixes",
                                                                                             "alarms"})) -> Written:
    end = plan.end or datetime.now(timezone.utc)
    conn = psycopg2.connect(dsn, application_name="gcc-history")
    try:
        city = read_city(conn)
        with conn, conn.cursor() as cur:       # the engine's defaults, if it has not started yet
            store.seed(cur, sorted({end.year - 1, end.year, end.year + 1, (end - timedelta(days=plan.days)).year}),
                       "history")
            rules = store.load_rules(cur)
        written = Written()
        with conn.cursor() as cur:
            cur.execute("select exists (select 1 from cases where case_id like 'C%%-H%%')")
            loaded = cur.fetchone()[0]
        conn.commit()
        if loaded:
            log.info("a history is loaded already: nothing added (--clear replaces it)")
            return written
        if "cases" in what:
            w = write_cases(conn, city, rules, plan, end, progress)
            written.cases, written.events, written.escalations = w.cases, w.events, w.escalations
            fold_everything(conn, end, progress)
        if "fixes" in what:
            written.fixes = write_fixes(conn, city, plan, end, progress)
            fold_patrols(conn, city, end - timedelta(days=plan.days + 1), end, progress)
        if "alarms" in what:
            written.alarms = write_alarms(conn, city, plan, end, progress)
        return written
    finally:
        conn.close()


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 50:                               # normal approximation for large means
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.history", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=Plan.days)
    parser.add_argument("--seed", type=int, default=Plan.seed)
    parser.add_argument("--cases-per-grid-day", type=float, default=Plan.cases_per_grid_day)
    parser.add_argument("--fix-every-s", type=float, default=Plan.fix_every_s)
    parser.add_argument("--patrol-min", type=float, default=Plan.patrol_min)
    parser.add_argument("--only", default="cases,fixes,alarms", help="what to write, comma-separated")
    parser.add_argument("--clear", action="store_true", help="remove an earlier history first")
    parser.add_argument("--refold", action="store_true", help="only fold every case into the rollups again")
    parser.add_argument("--dsn", help="the database (default: the configured one, as its owner)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    dsn = args.dsn or load_settings().pg_dsn
    if args.refold:
        conn = psycopg2.connect(dsn)
        try:
            print(f"{refold(conn, datetime.now(timezone.utc)):,} cases folded")
        finally:
            conn.close()
        return 0
    if args.clear:
        conn = psycopg2.connect(dsn)
        try:
            clear(conn)
        finally:
            conn.close()
    started = time.monotonic()
    plan = Plan(args.days, args.seed, args.cases_per_grid_day, args.fix_every_s, args.patrol_min)
    written = generate(dsn, plan, what=frozenset(w.strip() for w in args.only.split(",")))
    print(f"{written.rows:,} rows in {time.monotonic() - started:.0f} s: {written.cases:,} cases, "
          f"{written.events:,} case events, {written.escalations:,} escalation steps, {written.fixes:,} fixes, "
          f"{written.alarms:,} alarms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

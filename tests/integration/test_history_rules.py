"""The generated history obeys the rules the screens show, against real PostgreSQL (a database of
its own): every case finishes or climbs its escalation ladder exactly as the cases engine would have
(the same steps, the same case_escalations rows, levels and events, and a ladder position the live
engine goes on from); no member is "en route" for days; the open cases at the end are a small tail
of work in progress; and the assessment still has closed cases on most days."""
from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest

from cases import store
from cases.engine import escalate_due
from cases.escalation import DEFAULT_LADDERS, Anchor, Position, due
from cases.limits import Stage
from cases.model import OPEN, State
from cases.notices import Recipients
from kpis.facts import city_day
from simulator import history

from .conftest import demo_city
from .ingest_helpers import rows
from .kpi_helpers import own_database

pytestmark = pytest.mark.slow
END = datetime(2026, 11, 26, 6, 0, tzinfo=timezone.utc)        # a Thursday, 14:00 in the city
PLAN = history.Plan(days=8, seed=3, cases_per_grid_day=1.5, end=END)
EN_ROUTE_AT_MOST = timedelta(hours=12)     # accepted = "en route": the member is on the way, not for days
STOPPED = {State.REFUSED.value, State.CLOSED.value, State.EVALUATED.value, State.SUSPENDED.value}


@pytest.fixture(scope="module")
def history_dsn(stack):
    with own_database(stack, "gcc_history_rules_test") as dsn:
        history.generate(dsn, PLAN, progress=False, what=frozenset({"cases"}))
        yield dsn


def _rules(dsn):
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            return store.load_rules(cur)
    finally:
        conn.close()


def _open_cases(dsn):
    """Each open case as stored, with its ladder position and next step."""
    found = rows(dsn, f"select {', '.join(store.CASE_COLUMNS)}, ladder_seq, ladder_step, ladder_repeat, "
                      "next_escalation_at from cases where state = any(%s)", (sorted(s.value for s in OPEN),))
    n = len(store.CASE_COLUMNS)
    return [(store.from_row(r[:n]), Position(*r[n:n + 3]), r[n + 3]) for r in found]


def _escalations(dsn) -> dict[str, set[tuple[int, int, int, str]]]:
    fired: dict[str, set] = defaultdict(set)
    for case_id, seq, step, repeat, level in rows(dsn, "select case_id, stage_seq, step, repeat, level "
                                                        "from case_escalations"):
        fired[case_id].add((seq, step, repeat, level))
    return fired


def test_every_open_case_past_a_step_of_its_ladder_has_climbed_it_as_the_engine_would(history_dsn):
    rules = _rules(history_dsn)
    fired = _escalations(history_dsn)
    events = Counter(dict(rows(history_dsn, "select case_id, count(*) from case_events where command = 'escalate' "
                                             "group by case_id")))
    open_cases = _open_cases(history_dsn)
    overdue = [c for c, _, _ in open_cases if c.deadline is not None and c.deadline < END]
    wrong = []
    for case, position, next_at in open_cases:
        if case.deadline is None:                   # suspended: no clock, no ladder
            continue
        ladder = store.ladder_for(case)
        steps = {(seq, step) for seq, step, _, _ in fired[case.case_id] if seq == case.stage_seq}
        levels = [lv for seq, _, _, lv in fired[case.case_id] if seq == case.stage_seq]
        # what the engine, started at the stage clock and running until END, has fired by then
        owed = {(f.stage_seq, f.step) for f in due(case, ladder, Position(case.stage_seq), END, rules.calendar).firings}
        highest = max(levels, key=[s.level.value for s in ladder].index) if levels else None
        if (not owed <= steps or position.stage_seq != case.stage_seq or next_at is None or next_at <= END
                or next_at != store.next_escalation(case, position, rules) or case.escalation_level != highest):
            wrong.append((case.case_id, case.state.value, f"deadline {case.deadline:%m-%d %H:%M}",
                          f"owed steps {sorted(s for _, s in owed)}, fired {sorted(s for _, s in steps)}",
                          f"level {case.escalation_level}", f"next {next_at}"))
    summary = (f"{len(open_cases)} open, {len(overdue)} past their deadline (the oldest "
               f"{max((END - c.deadline for c in overdue), default=timedelta(0))} late), "
               f"{sum(1 for c, _, _ in open_cases if c.escalation_level)} escalated, {len(wrong)} not as the engine")
    assert not wrong, summary + "\n" + "\n".join(map(str, wrong[:10]))
    # every step fired is one event (the engine writes both in one transaction)
    assert events == Counter({case_id: len(steps) for case_id, steps in fired.items()})


def _stage_clocks(dsn):
    """(case_id, stage_seq, stage, deadline, ended) of every stage clock, replayed from the events:
    a clock starts with an event that names its stage, an approved extension moves its deadline, it
    ends with the next clock or a stop (refused, closed, suspended); one still running ends at END."""
    clocks, running = [], {}
    for case_id, at, command, to_state, detail in rows(dsn, "select case_id, time, command, to_state, detail "
                                                             "from case_events order by case_id, id"):
        clock = running.get(case_id)
        if clock is not None and ("stage" in detail or to_state in STOPPED):
            clocks.append((*clock, at))
            running.pop(case_id)
        if "stage" in detail:
            seq = clock[1] + 1 if clock is not None else 1 + sum(1 for c in clocks if c[0] == case_id)
            running[case_id] = (case_id, seq, Stage(detail["stage"]), datetime.fromisoformat(detail["deadline"]))
        elif command == "decide_extension" and detail.get("approved") and clock is not None:
            running[case_id] = (*clock[:3], datetime.fromisoformat(detail["deadline"]))
    return clocks + [(*c, END) for c in running.values()]


def test_no_stage_clock_ran_past_its_deadline_steps_without_them(history_dsn):
    """Finished or not: a stage clock that ran past its deadline (plus a step's delay) fired that step."""
    calendar = _rules(history_dsn).calendar
    fired = _escalations(history_dsn)
    clocks = _stage_clocks(history_dsn)
    missing = []
    for case_id, seq, stage, deadline, ended in clocks:
        for i, step in enumerate(DEFAULT_LADDERS[stage]):
            at = calendar.add(deadline, step.after) if step.after else deadline
            if step.anchor is Anchor.DEADLINE and ended > at and not any(
                    (s, st, r) == (seq, i, 0) for s, st, r, _ in fired[case_id]):
                missing.append((case_id, seq, stage.value, i, f"ran {ended - deadline} past {deadline:%m-%d %H:%M}"))
    late = sum(1 for *_, deadline, ended in clocks if ended > deadline)
    assert not missing, (f"{len(clocks)} stage clocks, {late} ran past their deadline, {len(missing)} ladder steps "
                         f"never fired\n" + "\n".join(map(str, missing[:10])))


def test_no_member_is_en_route_for_days(history_dsn):
    """The dispatcher's tasks in progress: a member who accepted is on the way, then on site."""
    en_route = rows(history_dsn, "select c.case_id, max(e.time) from cases c join case_events e using (case_id) "
                                  "where c.state = 'accepted' and e.to_state = 'accepted' group by c.case_id "
                                  "having max(e.time) < %s", (END - EN_ROUTE_AT_MOST,))
    assert not en_route, f"{len(en_route)} members en route for more than {EN_ROUTE_AT_MOST}: {en_route[:5]}"


def test_every_cases_events_move_forward_in_time(history_dsn):
    """Each step of a story comes after the one before (a late stage's next step was once capped at
    a time before it, and durations came out negative)."""
    backwards = rows(history_dsn, "select case_id, count(*) from (select case_id, time < lag(time) over "
                                   "(partition by case_id order by id) as back from case_events) e where back "
                                   "group by case_id")
    assert backwards == [], f"{len(backwards)} cases with an event before the one before it: {backwards[:5]}"


def test_the_open_cases_at_the_end_are_a_small_tail_of_recent_work(history_dsn):
    """Little's law: the work open at the end = arrivals x the time a case takes. The limits make that
    hours for most categories and days to three weeks for a sixth of them (illegal construction 15
    working days; disputes, roads, facilities 3; lights, posters 2), the grids taking 0.25-1.5 of a
    limit: about two days of arrivals, so at most a quarter of these 8 days' cases (a fifteenth of a
    30-day history). Late work is acted on soon after its ladder has climbed, so only the stages
    whose deadline fell in the last hours can be past it now: a handful, at most 2 % of the cases."""
    still_open, total, overdue, suspended = rows(
        history_dsn, "select count(*) filter (where state = any(%s)), count(*), "
                     "count(*) filter (where state = any(%s) and deadline < %s), "
                     "count(*) filter (where state = 'suspended') from cases",
        (sorted(s.value for s in OPEN), sorted(s.value for s in OPEN), END))[0]
    assert total > 1000
    assert still_open <= total / 4, (still_open, total, rows(
        history_dsn, "select category, state, count(*) from cases where state = any(%s) group by 1, 2 "
                     "order by 3 desc limit 12", (sorted(s.value for s in OPEN),)))
    assert overdue <= total / 50, (overdue, total)
    assert suspended <= total / 50, (suspended, total)       # parked with a reason: a few


def test_the_assessment_still_has_closed_cases_on_most_days(history_dsn):
    closed = dict(rows(history_dsn, "select day, sum(closed) from kpi_daily where level = 6 group by day"))
    days = [city_day(END) - timedelta(days=i) for i in range(PLAN.days)]
    with_closures = [d for d in days if closed.get(d, 0) > 0]
    assert len(with_closures) >= PLAN.days - 3, closed        # weekends close less, but most days close some
    states = dict(rows(history_dsn, "select state, count(*) from cases group by state"))
    assert states.get("closed", 0) + states.get("evaluated", 0) > sum(states.values()) / 2, states


def test_the_live_engine_goes_on_from_where_the_history_stops(history_dsn):
    """(Last in the module: it fires steps.) The cases engine started at the end owes nothing; six
    hours on, it takes every open case whose next step fell due meanwhile, and each step it fires is
    new (the history fired none of them already, and skipped none before them)."""
    rules, recipients = _rules(history_dsn), Recipients(demo_city())
    conn = psycopg2.connect(history_dsn)
    try:
        assert escalate_due(conn, rules, END, recipients).rows == 0
        later = END + timedelta(hours=6)
        owed = rows(history_dsn, "select count(*) from cases where next_escalation_at <= %s", (later,))[0][0]
        before = rows(history_dsn, "select count(*) from case_escalations")[0][0]
        fired = escalate_due(conn, rules, later, recipients)
    finally:
        conn.close()
    assert fired.rows == owed > 0
    assert len(fired.firings) == rows(history_dsn, "select count(*) from case_escalations")[0][0] - before > 0
    steps = set(rows(history_dsn, "select case_id, stage_seq, step from case_escalations"))
    assert all(f.step == 0 or (case_id, f.stage_seq, f.step - 1) in steps for case_id, f in fired.firings)

"""The cases engine under 100,000 open cases, measured side by side with a naive poller.

    .venv/bin/python -m bench.cases_bench [--cases 100000] [--spread-s 300] [--transitions 2000]

Starts its own local stack (temp dir, free ports), migrates and seeds, then, one after the other
on the same database:
  engine      `cases.engine`: N open cases with random deadlines spread over the next `--spread-s`
              seconds (their amber times 20 % of a 10-minute limit earlier), each with its first
              ladder step stored as next_escalation_at; the engine wakes at the next one, takes the
              due ones FOR UPDATE SKIP LOCKED and fires them. Reported: how late each step fired
              after it fell due (p50, p99, max), the wake-ups, the cases looked at per wake-up and
              the time each took.
  naive       the same cases afresh, and a poller that every second reads every open case and asks
              `cases.escalation.due` of each (what one writes without stored deadlines).
  transitions `register` applied to `--transitions` reported cases through the command path
              (lock, apply, save, event, commit: one transaction each), against `apply` alone.
Each step fired is written as the engine writes it (an escalation row, an event, the case).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import datetime, timedelta, timezone

import psycopg2

from bench.harness import BenchStack, percentile
from cases import store
from cases.calendar import WorkCalendar
from cases.engine import escalate_due
from cases.escalation import Position, due
from cases.limits import LimitTable, Urgency
from cases.machine import Rules, apply, open_case
from cases.model import FINISHED, Actor, ActorKind, Register, Source, State, values
from cases.notices import Recipients
from core.city import City
from core.roles import UserRole

GRIDS = [f"350102{s:03d}{c:03d}{g:03d}" for s in (1, 2) for c in (1, 2, 3) for g in range(1, 11)]
DISPATCHER = Actor(ActorKind.USER, "bench", frozenset({UserRole.DISPATCHER.value}), "")


def _fill(dsn: str, n: int, spread_s: float) -> datetime:
    """N registered cases whose amber time and deadline fall in the next `spread_s` seconds."""
    start = datetime.now(timezone.utc) + timedelta(seconds=5)
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("truncate case_escalations, case_sources, case_inbox")
            cur.execute("alter table case_events disable trigger case_events_no_truncate")
            cur.execute("truncate case_events")
            cur.execute("alter table case_events enable trigger case_events_no_truncate")
            cur.execute("delete from cases")
            cur.execute(
                "insert into cases (case_id, category, urgency, source, grid_code, org_code, state, opened_at, "
                "limits_version, stage_seq, stage_started_at, deadline_original, deadline, warn_at, ladder_seq, "
                "next_escalation_at) "
                "select 'B' || i, 'noise', 'urgent', 'report', g, g, %(registered)s, %(start)s, 1, 1, %(start)s, d, d, "
                "d - interval '2 minutes', 1, d - interval '2 minutes' "
                "from (select i, (%(grids)s::text[])[1 + i %% %(ngrids)s] as g, "
                "      %(start)s + interval '2 minutes' + random() * %(spread)s * interval '1 second' as d "
                "      from generate_series(1, %(n)s) i) s",
                {"start": start, "registered": State.REGISTERED.value, "grids": GRIDS, "ngrids": len(GRIDS),
                 "spread": spread_s, "n": n})
            cur.execute("analyze cases")
    finally:
        conn.close()
    return start


def run_engine(dsn: str, rules: Rules, until: datetime) -> dict:
    conn = psycopg2.connect(dsn)
    lags, wakeups, looked, took = [], 0, [], []
    recipients = Recipients(City("bench", 0))    # synthetic grids: no supervisors, nobody to tell
    try:
        while datetime.now(timezone.utc) < until:
            t0 = time.perf_counter()
            fired = escalate_due(conn, rules, datetime.now(timezone.utc), recipients)
            if fired.rows:
                wakeups += 1
                looked.append(fired.rows)
                took.append(time.perf_counter() - t0)
                lags += fired.lag_s
            with conn, conn.cursor() as cur:       # sleep until the next stored step
                cur.execute("select min(next_escalation_at) from cases where next_escalation_at is not null")
                nxt = cur.fetchone()[0]
            if nxt is not None:
                time.sleep(max(0.0, min(1.0, (nxt - datetime.now(timezone.utc)).total_seconds())))
    finally:
        conn.close()
    return {"lags": lags, "wakeups": wakeups, "looked": looked, "took": took}


def run_naive(dsn: str, rules: Rules, until: datetime) -> dict:
    """Every second: read every open case and ask `due` of each; fire what is due as the engine does."""
    conn = psycopg2.connect(dsn)
    lags, scans, took = [], 0, []
    positions: dict[str, Position] = {}
    try:
        while datetime.now(timezone.utc) < until:
            t0 = time.perf_counter()
            now = datetime.now(timezone.utc)
            with conn, conn.cursor() as cur:
                cur.execute(f"select {', '.join(store.CASE_COLUMNS)} from cases where state <> all(%s)",
                            (values(FINISHED),))
                for row in cur.fetchall():
                    case = store.from_row(row)
                    result = due(case, store.ladder_for(case) or (), positions.get(case.case_id), now, rules.calendar)
                    positions[case.case_id] = result.position
                    for firing in result.firings:
                        cur.execute("insert into case_escalations (case_id, stage_seq, step, repeat, stage, level, "
                                    "org_code, due_at, fired_at) values (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                                    "on conflict do nothing", (case.case_id, firing.stage_seq, firing.step,
                                                               firing.repeat, case.stage.value, firing.level.value,
                                                               firing.org_code, firing.due_at, now))
                        lags.append((now - firing.due_at).total_seconds())
            scans += 1
            took.append(time.perf_counter() - t0)
            time.sleep(max(0.0, 1.0 - (time.perf_counter() - t0)))
    finally:
        conn.close()
    return {"lags": lags, "scans": scans, "took": took}


def run_transitions(dsn: str, rules: Rules, n: int) -> tuple[float, float]:
    """(through the command path, apply alone): register commands per second."""
    now = datetime.now(timezone.utc)
    system = Actor.system("bench")
    opened = [open_case(f"T{i}", "noise", Urgency.NORMAL, Source.REPORT, GRIDS[i % len(GRIDS)],
                        GRIDS[i % len(GRIDS)], system, now, rules).case for i in range(n)]
    t0 = time.perf_counter()
    for case in opened:
        apply(case, Register(), DISPATCHER, now, rules)
    pure = n / (time.perf_counter() - t0)
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            for case in opened:
                store.insert(cur, case, rules)
        t0 = time.perf_counter()
        for case in opened:
            with conn, conn.cursor() as cur:
                locked = store.load(cur, case.case_id)
                outcome = apply(locked, Register(), DISPATCHER, datetime.now(timezone.utc), rules)
                store.save(cur, outcome.case, rules)
                store.add_events(cur, outcome.events)
        through = n / (time.perf_counter() - t0)
    finally:
        conn.close()
    return through, pure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--spread-s", type=float, default=300.0)
    parser.add_argument("--transitions", type=int, default=2000)
    args = parser.parse_args()
    with BenchStack("cases") as bench:
        dsn = bench.dsn
        rules = Rules({1: LimitTable.defaults()}, WorkCalendar())
        window = args.spread_s + 2 * 60 + 10
        print(f"# cases_bench on {platform.node()} ({platform.processor() or platform.machine()}), "
              f"{args.cases:,} open cases, deadlines over {args.spread_s:.0f} s, 2 steps each in the window")
        start = _fill(dsn, args.cases, args.spread_s)
        engine = run_engine(dsn, rules, start + timedelta(seconds=window))
        start = _fill(dsn, args.cases, args.spread_s)
        naive = run_naive(dsn, rules, start + timedelta(seconds=window))
        through, pure = run_transitions(dsn, rules, args.transitions)
        for name, r, per in (("engine", engine, "wake-up"), ("naive", naive, "scan")):
            lags = r["lags"]
            print(f"{name:<8} steps fired {len(lags):>7,}  lag p50 {percentile(lags, .5):6.3f} s  "
                  f"p99 {percentile(lags, .99):6.3f} s  "
                  f"max {max(lags) if lags else float('nan'):6.3f} s  {per}s {r.get('wakeups', r.get('scans')):>5}  "
                  f"time per {per} p50 {statistics.median(r['took']) * 1000:7.1f} ms  "
                  f"p99 {percentile(r['took'], .99) * 1000:7.1f} ms"
                  + (f"  cases per wake-up p50 {statistics.median(r['looked']):.0f}" if name == "engine" else ""))
        print(f"transitions  register through the command path {through:,.0f}/s  apply alone {pure:,.0f}/s  "
              f"(ratio {pure / through:.0f}×)")


if __name__ == "__main__":
    main()

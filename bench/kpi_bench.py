"""The queries behind the KPI page over 30 days of the big city's history, from the rollups and,
side by side in the same run, the same numbers from the raw facts (no rollups).

    .venv/bin/python -m bench.kpi_bench [--data-dir /var/tmp/gcc-bench-kpis] [--days 90] [--runs 30]

Starts a local stack in `--data-dir` (kept: the history is generated once, ~10 minutes, and reused
by every later run), loads the big city (`simulator.citygen --scale big`: 2,000 grids, 8,000
members, ~200,000 sensors), backfills `--days` days of history (simulator/history.py: cases through the
real machine, their rollups folded by the maintainer's own pass, members' patrols, alarms), then
times, for the city, a district, a street and a community, over the last 30 whole days:
  report     kpis.report.read: its statements over kpi_daily and kpi_durations (the scope's rows, its children's)
             (cards, ranking, categories, days)
  raw        the ranking's counters computed from case_events, case_stage_facts and case_facts
             directly, checked equal to the rollups' for every unit
  overdue    the overdue list and its count (cases, an indexed comparison)
  rework     the rework list (case_events of the period)
  +patrols   the report with the patrol and diary rates as the page reads it (patrol_daily, diary_entries)
  field      alarms per 1,000 devices, time to acknowledge, announcements read
  diary      the diary list
Reported: p50 and p95 of each, and raw / report.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg2

from bench.harness import BenchStack, percentile, timed
from core.catalogue import CaseState
from core.city import CITY_TZ
from dashboard.authz import Scope
from dashboard.queries import Queries
from database.citydb import load_city, read_city
from kpis.report import Period, child_length, read
from simulator import history

# the ranking's counters, from the raw facts, per child unit (%(n)s: its code length)
RAW = """
with ev as (
    select left(c.org_code, %(n)s) as unit,
           count(*) filter (where e.command = 'register' or (e.command = 'open' and e.to_state = %(registered)s))
               as registered,
           count(*) filter (where e.command = 'close') as closed,
           count(*) filter (where e.command = 'feedback') as handled,
           count(*) filter (where e.command = 'verify' and e.to_state = %(handling)s) as reworked
    from case_events e join cases c using (case_id)
    where e.time >= %(start)s and e.time < %(end)s and org_contains(%(scope)s, c.org_code)
      and length(c.org_code) >= %(n)s
    group by 1),
st as (
    select left(org_code, %(n)s) as unit,
           count(*) filter (where stage = 'dispatch') as dispatch_due,
           count(*) filter (where stage = 'dispatch' and on_time) as dispatch_on_time,
           count(*) filter (where stage = 'handle') as handle_due,
           count(*) filter (where stage = 'handle' and on_time) as handle_on_time
    from case_stage_facts
    where on_time is not null and counted_day between %(first)s and %(last)s and org_contains(%(scope)s, org_code)
      and length(org_code) >= %(n)s
    group by 1),
co as (
    select left(org_code, %(n)s) as unit, count(*) as due, count(*) filter (where closed) as due_closed,
           count(*) filter (where closed and not late and not suspended and not extended) as due_on_time,
           count(*) filter (where not suspended and not extended) as assessable,
           count(*) filter (where extended) as due_extended
    from case_facts
    where due_day between %(first)s and %(last)s and not refused and org_contains(%(scope)s, org_code)
      and length(org_code) >= %(n)s
    group by 1),
od as (
    select unit, count(*) as went_overdue from (
        select left(org_code, %(n)s) as unit, min(counted_day) as first_late from case_stage_facts
        where on_time = false and org_contains(%(scope)s, org_code) and length(org_code) >= %(n)s
        group by case_id, 1) f
    where first_late between %(first)s and %(last)s group by 1)
select unit, ev.registered, ev.closed, ev.handled, ev.reworked, st.dispatch_due, st.dispatch_on_time, st.handle_due,
       st.handle_on_time, co.due, co.due_closed, co.due_on_time, co.assessable, co.due_extended, od.went_overdue
from ev full join st using (unit) full join co using (unit) full join od using (unit)
"""
RAW_COUNTERS = ("registered", "closed", "handled", "reworked", "stage:dispatch:due", "stage:dispatch:on_time",
                "stage:handle:due", "stage:handle:on_time", "due", "due_closed", "due_on_time", "assessable",
                "due_extended", "went_overdue")


def prepare(bench: BenchStack, days: int) -> None:
    """The big city loaded once into the kept stack, and `days` of history (generated once)."""
    from simulator.citygen import SCALES, generate

    dsn = bench.dsn
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("select count(*) from grids")
            grids = cur.fetchone()[0]
        conn.commit()
        if not grids:
            print("loading the big city ...", flush=True)
            load_city(conn, generate(SCALES["big"], seed=7))
    finally:
        conn.close()
    started = time.monotonic()
    written = history.generate(dsn, history.Plan(days=days))
    if written.rows:
        print(f"history: {written.rows:,} rows in {time.monotonic() - started:.0f} s ({written.cases:,} cases, "
              f"{written.events:,} events, {written.fixes:,} fixes, {written.alarms:,} alarms)", flush=True)
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("analyze")
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("/var/tmp/gcc-bench-kpis"))
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--refold", action="store_true", help="fold the kept history into the rollups again first")
    args = parser.parse_args(argv)
    with BenchStack("kpis", data_dir=args.data_dir, keep=True) as bench:     # kept: the history is reused
        stack = bench.stack
        prepare(bench, args.days)
        if args.refold:
            conn = psycopg2.connect(stack.settings().pg_dsn)
            history.refold(conn, datetime.now(timezone.utc))
            conn.close()
        dsn = stack.settings().pg_dsn
        conn = psycopg2.connect(dsn)
        with conn.cursor() as cur:
            cur.execute("select count(*) from positions")
            fixes = cur.fetchone()[0]
            cur.execute("select (select count(*) from cases), (select count(*) from case_events), "
                        "(select count(*) from device_alarms), (select count(*) from kpi_daily)")
            cases, events, alarms, rollup_rows = cur.fetchone()
        conn.commit()
        city = read_city(conn)
        queries = Queries(city, stack.settings().redis_client(), dsn)
        today = datetime.now(CITY_TZ).date()
        period = Period("custom", today - timedelta(days=30), today - timedelta(days=1))
        start = datetime.combine(period.first, datetime.min.time(), CITY_TZ)
        end = datetime.combine(period.last + timedelta(days=1), datetime.min.time(), CITY_TZ)
        scopes = [("city", ""), ("district", city.districts[0].code), ("street", city.streets[0].code),
                  ("community", city.communities[0].code)]
        print(f"\n{platform.node()} · {cases:,} cases, {events:,} case events, {fixes:,} fixes, {alarms:,} alarms "
              f"({cases + events + fixes + alarms:,} rows); {rollup_rows:,} rollup rows · 30 days "
              f"{period.first} – {period.last} · {args.runs} runs each, interleaved\n")
        print(f"{'scope':<10} {'query':<8} {'p50 ms':>8} {'p95 ms':>8}   raw/report (p50)")
        for name, code in scopes:
            n = child_length(code)
            report_ms, raw_ms = [], []
            report = raw = None
            for _ in range(args.runs):         # interleaved, so the machine's noise falls on both alike
                t, report = timed(lambda code=code: read(queries.rows, code, period), 1)
                report_ms += t
                t, raw = timed(lambda code=code, n=n: queries.rows(RAW, {
                    "n": n, "scope": code, "registered": CaseState.REGISTERED.value,
                    "handling": CaseState.HANDLING.value, "start": start, "end": end, "first": period.first,
                    "last": period.last}), 1)
                raw_ms += t
            by_unit = {row[0]: row[1:] for row in raw}
            for unit, totals in report.units.items():
                got = by_unit.get(unit, (None,) * len(RAW_COUNTERS))
                want = tuple(totals.count(c) for c in RAW_COUNTERS)
                if tuple(v or 0 for v in got) != want:
                    raise SystemExit(f"raw facts and rollups differ for {unit}: {got} != {want}")
            scope = Scope(code, name)
            overdue_ms, _ = timed(lambda scope=scope: queries.overdue_now(scope, 50), args.runs)
            rework_ms, _ = timed(lambda scope=scope: queries.reworked(scope, period, 50), args.runs)
            patrol_ms, _ = timed(lambda code=code: read(queries.rows, code, period, city), args.runs)
            field_ms, _ = timed(lambda scope=scope: queries.field_indicators(scope, period), args.runs)
            diary_ms, _ = timed(lambda scope=scope: queries.diary(scope, period), args.runs)
            for label, values in (("report", report_ms), ("raw", raw_ms), ("overdue", overdue_ms),
                                  ("rework", rework_ms), ("+patrols", patrol_ms), ("field", field_ms),
                                  ("diary", diary_ms)):
                ratio = f"   {statistics.median(raw_ms) / statistics.median(report_ms):.1f}×" if label == "raw" else ""
                print(f"{name:<10} {label:<8} {percentile(values, 0.5):>8.1f} {percentile(values, 0.95):>8.1f}{ratio}")
        print(f"\nthe raw facts gave the rollups' numbers for every unit ({len(RAW_COUNTERS)} counters each)")
        queries.db.closeall()
        conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

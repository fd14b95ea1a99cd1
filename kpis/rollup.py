"""The assessment's rollups, maintained incrementally (a thread of the cases engine).

Each pass, in one transaction: take the cases whose events are not folded yet (`kpi_dirty`, a log
filled by a trigger in the transaction that wrote the event, so none is missed, and never waited
on: it has no unique key) and the cases whose
running stage went past its deadline; fold each one's new events (kpis/facts.py) from where its
facts stand (`last_event_id`: a replay after a crash folds nothing twice); write the facts, the
stage facts and the sums into the daily rollups (`insert … on conflict do update set n = n + …`).
The facts and the rollups commit together or not at all, so the rollups are always the sum of
the facts. Each sum goes to the case's own org unit and to every unit above it, so that a
scope's totals and its children's are a few rows each. Two engines may run at once: the dirty
rows and the facts rows are taken with `FOR UPDATE SKIP LOCKED`.

A deadline counts as passed `GRACE_S` after it (an event written just before it, committed just
after, still counts on time).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone

import psycopg2
from psycopg2.extras import execute_values

from cases import listening
from kpis.facts import (
    COUNTERS,
    STAGES,
    CaseEvent,
    CaseFacts,
    Folded,
    city_day,
    duration_bin,
    fold_all,
    stage_counter,
)

log = logging.getLogger(__name__)
EVERY_S = 5.0
GRACE_S = 60.0
BATCH = 2000

# the rollup's columns, in kpi_daily's order: the counters, then each stage's due and on time
COLUMNS: dict[str, str] = {c: c for c in COUNTERS}
COLUMNS.update({stage_counter(s, w): f"{s}_{w}" for s in STAGES for w in ("due", "on_time")})
FACT_COLUMNS = tuple(f.name for f in fields(CaseFacts))


@dataclass
class Pass:
    cases: int = 0
    events: int = 0
    rows: int = 0                # rollup rows written


def levels(org_code: str) -> list[str]:
    """The org unit and every unit above it (a grid's community, street and district): the rollup
    rows a case's sums go into."""
    return [org_code[:n] for n in (6, 9, 12, 15) if n <= len(org_code)]


def fact_row(f: CaseFacts) -> tuple:
    return tuple(getattr(f, c) for c in FACT_COLUMNS)


def load_facts(cur, case_ids: list[str]) -> dict[str, CaseFacts]:
    """The facts of these cases, locked; a case with none yet starts from its cases row."""
    cur.execute(f"select {', '.join(FACT_COLUMNS)} from case_facts where case_id = any(%s) for update",
                (case_ids,))
    found = {row[0]: CaseFacts(*row) for row in cur.fetchall()}
    missing = [c for c in case_ids if c not in found]
    if missing:
        cur.execute("select case_id, org_code, category, opened_at from cases where case_id = any(%s)", (missing,))
        for case_id, org_code, category, opened_at in cur.fetchall():
            found[case_id] = CaseFacts(case_id, org_code, category, opened_at)
    return found


def load_events(cur, facts: dict[str, CaseFacts]) -> dict[str, list[CaseEvent]]:
    if not facts:
        return {}
    ids = list(facts)
    cur.execute("select e.id, e.case_id, e.time, e.command, e.from_state, e.to_state, e.detail from case_events e "
                "join unnest(%s::text[], %s::bigint[]) as f(case_id, last_id) on e.case_id = f.case_id "
                "and e.id > f.last_id order by e.case_id, e.id",
                (ids, [facts[c].last_event_id for c in ids]))
    events: dict[str, list[CaseEvent]] = defaultdict(list)
    for row in cur.fetchall():
        events[row[1]].append(CaseEvent(*row))
    return events


def write(cur, folded: Iterable[Folded]) -> int:
    """The facts, stage facts and rollup sums of these folds, in the caller's transaction. Returns
    the rollup rows written."""
    folded = list(folded)
    daily: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    durations: dict[tuple, list] = defaultdict(lambda: [0, 0.0, defaultdict(int)])
    stages: dict[tuple, tuple] = {}
    for fo in folded:
        f = fo.facts
        units = levels(f.org_code)
        for c in fo.counts:
            for unit in units:
                daily[(c.day, unit, f.category)][c.counter] += c.n
        for d in fo.durations:
            for unit in units:
                slot = durations[(d.day, unit, d.measure)]
                slot[0] += 1
                slot[1] += d.seconds
                slot[2][duration_bin(d.seconds)] += 1
        for s in fo.stages:         # the later row of a stage (it ended after going late) wins, but the day
            key = (s.case_id, s.stage_seq)   # it counted on is the first row's (its deadline, before any extension)
            counted = city_day(s.counted_at) if s.counted_at else stages[key][-1] if key in stages else None
            stages[key] = (s.case_id, s.stage_seq, s.stage, f.org_code, f.category, s.started_at, s.deadline,
                           s.ended_at, s.ended_by, s.on_time, counted)
    if folded:
        cols = ", ".join(FACT_COLUMNS)
        execute_values(cur, f"insert into case_facts ({cols}) values %s on conflict (case_id) do update set "
                            + ", ".join(f"{c} = excluded.{c}" for c in FACT_COLUMNS[1:]),
                       [fact_row(fo.facts) for fo in folded], page_size=1000)
    if stages:
        execute_values(cur, "insert into case_stage_facts (case_id, stage_seq, stage, org_code, category, started_at, "
                            "deadline, ended_at, ended_by, on_time, counted_day) values %s "
                            "on conflict (case_id, stage_seq) do update set ended_at = excluded.ended_at, "
                            "ended_by = excluded.ended_by, on_time = excluded.on_time, "
                            "counted_day = coalesce(case_stage_facts.counted_day, excluded.counted_day)",
                       list(stages.values()), page_size=1000)
    rows = [(day, org, cat, *(counts.get(k, 0) for k in COLUMNS)) for (day, org, cat), counts in daily.items()
            if any(counts.values())]
    if rows:
        names = ", ".join(COLUMNS.values())
        execute_values(cur, f"insert into kpi_daily (day, org_code, category, {names}) values %s "
                            "on conflict (day, org_code, category) do update set "
                            + ", ".join(f"{c} = kpi_daily.{c} + excluded.{c}" for c in COLUMNS.values()),
                       rows, page_size=1000)
    if durations:
        execute_values(cur, "insert into kpi_durations (day, org_code, measure, n, total_s, bins) values %s "
                            "on conflict (day, org_code, measure) do update set n = kpi_durations.n + excluded.n, "
                            "total_s = kpi_durations.total_s + excluded.total_s, "
                            "bins = kpi_add_bins(kpi_durations.bins, excluded.bins)",
                       [(*key, n, total, [bins.get(k, 0) for k in range(max(bins) + 1)])
                        for key, (n, total, bins) in durations.items()], page_size=1000)
    return len(rows) + len(durations)


def fold_pass(conn, now: datetime, batch: int = BATCH) -> Pass:
    """One transaction: up to `batch` dirty cases and cases whose stage deadline passed, folded and
    written."""
    done = Pass()
    cutoff = now - timedelta(seconds=GRACE_S)
    with conn, conn.cursor() as cur:
        cur.execute("delete from kpi_dirty where id in (select id from kpi_dirty order by id limit %s "
                    "for update skip locked) returning case_id", (batch,))
        ids = {row[0] for row in cur.fetchall()}
        cur.execute("select case_id from case_facts where stage is not null and not stage_late and stage_deadline < %s "
                    "order by stage_deadline limit %s for update skip locked", (cutoff, batch))
        ids.update(row[0] for row in cur.fetchall())
        if not ids:
            return done
        facts = load_facts(cur, sorted(ids))
        events = load_events(cur, facts)
        folded = [fold_all(f, events.get(case_id, ()), now=cutoff) for case_id, f in facts.items()]
        done.cases = len(folded)
        done.events = sum(len(v) for v in events.values())
        done.rows = write(cur, folded)
    return done


class RollupMaintainer:
    """The thread: a pass every `every_s` (more at once while there is a backlog)."""

    def __init__(self, dsn: str, stop_event: threading.Event | None = None, every_s: float = EVERY_S) -> None:
        self.dsn = dsn
        self.stop_event = stop_event or threading.Event()
        self.every_s = every_s
        self.folded = 0              # cases folded since the start (the engine's /metrics)
        self.last_pass_at: float | None = None

    def run(self) -> None:
        listening.keep_running(self._loop, self.stop_event, "the KPI rollup maintainer")

    def _loop(self) -> None:
        conn = psycopg2.connect(self.dsn, application_name="gcc-cases-kpis")
        try:
            while not self.stop_event.is_set():
                done = fold_pass(conn, datetime.now(timezone.utc))
                self.folded += done.cases
                self.last_pass_at = time.time()
                if done.cases < BATCH:
                    self.stop_event.wait(self.every_s)
        finally:
            conn.close()


"""The assessment's rollups against real PostgreSQL + TimescaleDB, in a database of their own (the
history would otherwise show in every other test's case lists): a few days of history written by
the generator (cases walked through the real machine, their events through the kpi_dirty trigger)
and folded by the maintainer's own pass; the rollups must equal the pure fold of every case's
events, survive a pass that fails before its commit, not double-count with two maintainers at
once, and agree with the raw stage facts; the report reads them as sums over sums."""
from __future__ import annotations

import threading
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone

import psycopg2
import pytest

from kpis import history, rollup
from kpis.facts import CaseEvent, CaseFacts, city_day, fold_all
from kpis.indicators import Assessment
from kpis.report import Period, rank, read
from kpis.rollup import COLUMNS, GRACE_S, fold_pass, levels

from .conftest import demo_city
from .kpi_helpers import own_database

pytestmark = pytest.mark.slow
END = datetime(2026, 11, 20, 14, 0, tzinfo=timezone.utc)
PLAN = history.Plan(days=4, seed=11, cases_per_grid_day=0.8, fix_every_s=300, patrol_min=20,
                    alarms_per_sensor_day=0.002, end=END)


@pytest.fixture(scope="module")
def kpi_dsn(stack):
    with own_database(stack, "gcc_kpis_test") as dsn:
        yield dsn


def _rows(dsn, sql, args=()):
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


def _rollups(dsn) -> Counter:
    """(day, org, category, counter) -> n, from kpi_daily."""
    out: Counter = Counter()
    for day, org, cat, *sums in _rows(dsn, f"select day, org_code, category, {', '.join(COLUMNS.values())} "
                                           "from kpi_daily"):
        for counter, n in zip(COLUMNS, sums, strict=True):
            if n:
                out[(day, org, cat, counter)] += n
    return out


def _pure(dsn, now) -> Counter:
    """The same sums, from folding each case's events from scratch in Python."""
    cases = {c: (org, cat, opened) for c, org, cat, opened in _rows(
        dsn, "select case_id, org_code, category, opened_at from cases")}
    events = defaultdict(list)
    for row in _rows(dsn, "select id, case_id, time, command, from_state, to_state, detail from case_events "
                          "order by case_id, id"):
        events[row[1]].append(CaseEvent(*row))
    out: Counter = Counter()
    for case_id, (org, cat, opened) in cases.items():
        folded = fold_all(CaseFacts(case_id, org, cat, opened), events[case_id], now=now)
        for c in folded.counts:
            for unit in levels(org):            # every level's rows: the grid's, its community's, …
                out[(c.day, unit, cat, c.counter)] += c.n
    return +out


@pytest.fixture(scope="module")
def generated(kpi_dsn):
    return history.generate(kpi_dsn, PLAN, progress=False)


def test_the_history_is_written_through_the_real_machine_and_folded_into_rollups_equal_to_the_pure_fold(
        kpi_dsn, generated):
    assert generated.cases > 300 and generated.events > 5 * generated.cases
    assert generated.fixes > 0 and generated.alarms > 0
    assert _rows(kpi_dsn, "select count(*) from kpi_dirty") == [(0,)]
    assert _rows(kpi_dsn, "select count(*) from case_inbox where key like '%%/hist-%%'") == [(0,)]  # not for the intake
    rolled = _rollups(kpi_dsn)
    assert rolled == _pure(kpi_dsn, END - timedelta(seconds=GRACE_S))
    counters = Counter()
    for (_, _, _, counter), n in rolled.items():
        counters[counter] += n
    # the stories are varied enough to exercise every counter the page shows
    for counter in ("registered", "closed", "due", "due_closed", "due_on_time", "went_overdue", "reworked",
                    "extensions", "suspensions", "refused", "handle_due", "handle_on_time"):
        key = counter if counter in COLUMNS else next(k for k, v in COLUMNS.items() if v == counter)
        assert counters[key] > 0, (counter, dict(counters))


def test_the_rollups_agree_with_the_raw_stage_facts(kpi_dsn, generated):
    by_stage = dict(_rows(kpi_dsn, "select stage, count(*) filter (where on_time is not null) from case_stage_facts "
                                   "group by stage"))
    on_time = dict(_rows(kpi_dsn, "select stage, count(*) filter (where on_time) from case_stage_facts group by stage"))
    sums = _rows(kpi_dsn, "select sum(dispatch_due), sum(dispatch_on_time), sum(handle_due), sum(handle_on_time) "
                          "from kpi_daily where level = 6")[0]           # the districts' rows hold every case
    assert sums == (by_stage["dispatch"], on_time["dispatch"], by_stage["handle"], on_time["handle"])
    # and day by day (a stage late before its extension counts on its first deadline's day in both)
    per_day = _rows(kpi_dsn, "select day, sum(handle_due), sum(handle_on_time), sum(went_overdue) from kpi_daily "
                             "where level = 6 group by day order by day")
    raw = _rows(kpi_dsn, "select d, sum(due), sum(on_time), sum(first) from ("
                         "  select counted_day as d, count(*) as due, count(*) filter (where on_time) as on_time, "
                         "         0 as first from case_stage_facts where stage = 'handle' and on_time is not null "
                         "  group by 1 union all select f, 0, 0, count(*) from (select min(counted_day) as f "
                         "  from case_stage_facts where on_time = false group by case_id) l group by 1) u "
                         "group by d order by d")
    assert per_day == raw


def test_a_pass_that_fails_before_its_commit_changes_nothing_and_two_maintainers_count_each_case_once(
        kpi_dsn, generated, monkeypatch):
    before = _rollups(kpi_dsn)
    # more work: every case dirty again, its facts forgotten, the rollups emptied (as `--clear` does)
    conn = psycopg2.connect(kpi_dsn)
    with conn, conn.cursor() as cur:
        cur.execute("truncate kpi_daily, kpi_durations, case_stage_facts, case_facts")
        cur.execute("insert into kpi_dirty select case_id from cases on conflict do nothing")

    real_write = rollup.write

    def crash(cur, folded):
        real_write(cur, folded)
        raise RuntimeError("killed before the commit")

    monkeypatch.setattr(rollup, "write", crash)
    with pytest.raises(RuntimeError):
        fold_pass(conn, END, batch=100)
    monkeypatch.setattr(rollup, "write", real_write)
    assert _rows(kpi_dsn, "select count(*) from kpi_daily") == [(0,)]
    assert _rows(kpi_dsn, "select count(*) from kpi_dirty") == [(generated.cases,)]
    conn.close()

    def drain():
        c = psycopg2.connect(kpi_dsn)
        try:
            while fold_pass(c, END, batch=50).cases:
                pass
        finally:
            c.close()

    workers = [threading.Thread(target=drain) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert _rollups(kpi_dsn) == before


def test_a_deadline_that_passes_later_is_counted_by_a_later_pass(kpi_dsn, generated):
    later = END + timedelta(days=5)     # a Friday evening: working-time deadlines fall from Monday
    waiting = _rows(kpi_dsn, "select count(*) from case_facts where stage is not null and not stage_late "
                             "and stage_deadline < %s", (later - timedelta(seconds=GRACE_S),))[0][0]
    assert waiting > 0                      # open cases whose clock runs past the history's end
    overdue_before = _rows(kpi_dsn, "select sum(went_overdue) from kpi_daily where level = 6")[0][0]
    conn = psycopg2.connect(kpi_dsn)
    try:
        while fold_pass(conn, later).cases:
            pass
    finally:
        conn.close()
    newly = _rows(kpi_dsn, "select sum(went_overdue) from kpi_daily where level = 6")[0][0] - overdue_before
    assert 0 < newly <= waiting
    assert _rollups(kpi_dsn) == _pure(kpi_dsn, later - timedelta(seconds=GRACE_S))


def test_the_report_of_a_street_sums_its_communities_and_ranks_every_one(kpi_dsn, generated):
    city = demo_city()
    street = city.streets[0]
    communities = [c.code for c in city.communities if c.code.startswith(street.code)]
    period = Period("custom", city_day(END) - timedelta(days=3), city_day(END))
    report = read(lambda sql, args: _rows(kpi_dsn, sql, args), street.code, period)
    direct = dict(_rows(kpi_dsn, "select left(org_code, 12), sum(due_closed)::int from kpi_daily "
                                 "where level = 15 and org_code like %s and day between %s and %s group by 1",
                        (street.code + "%", period.first, period.last)))       # from the grids' rows
    assert {c: t.count("due_closed") for c, t in report.units.items() if t.count("due_closed")} == \
           {c: n for c, n in direct.items() if n}
    assert report.total.count("due") == sum(t.count("due") for t in report.units.values())
    assert sum(report.days[d].count("registered") for d in report.days) == report.total.count("registered")
    assert sum(t.count("registered") for t in report.categories.values()) == report.total.count("registered")
    closure = report.total.rate("closure")
    assert closure.numerator == sum(direct.values()) and closure.denominator == report.total.count("due")
    assert 0 < report.total.histogram("close").n <= report.total.count("closed")   # first closures only
    ranked = rank(report, communities, Assessment())
    assert [r.code for r in ranked if r.place is not None] == sorted(
        (r.code for r in ranked if r.score is not None), key=lambda c: -next(x.score for x in ranked if x.code == c))
    assert {r.code for r in ranked} == set(communities)
    assert all(r.grade in "ABCDE" for r in ranked if r.score is not None)


def test_the_same_seed_gives_the_same_history(kpi_dsn, generated):
    def fingerprint():
        return _rows(kpi_dsn, "select count(*), md5(string_agg(case_id || state || coalesce(deadline::text, ''), ',' "
                              "order by case_id)) from cases where case_id like 'C%%-H%%'")
    first = fingerprint()
    conn = psycopg2.connect(kpi_dsn)
    try:
        history.clear(conn)
    finally:
        conn.close()
    assert _rows(kpi_dsn, "select count(*) from cases") == [(0,)]
    again = history.generate(kpi_dsn, PLAN, progress=False, what=frozenset({"cases"}))
    assert again.cases == generated.cases and fingerprint() == first


def test_the_period_before_counts_its_own_days_only_not_the_days_between(kpi_dsn, generated):
    # a week so far (Thursday and Friday, as if the week had begun on Thursday): the one before is
    # the same two days a week earlier; the days between (with history) belong to neither
    period = Period("week", date(2026, 11, 19), date(2026, 11, 20))
    before = period.previous()
    assert (before.first, before.last) == (date(2026, 11, 12), date(2026, 11, 13))
    report = read(lambda sql, args: _rows(kpi_dsn, sql, args), "", period)

    def registered(first, last):
        return _rows(kpi_dsn, "select coalesce(sum(registered), 0) from kpi_daily where level = 6 "
                     "and day between %s and %s", (first, last))[0][0]

    assert registered(date(2026, 11, 14), date(2026, 11, 18)) > 0          # the days between have cases
    assert report.total.count("registered") == registered(period.first, period.last) > 0
    assert report.previous.count("registered") == registered(before.first, before.last)

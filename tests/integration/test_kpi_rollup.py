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

from kpis import rollup
from kpis.facts import CaseEvent, CaseFacts, city_day, fold_all
from kpis.indicators import Assessment
from kpis.report import Period, rank, read
from kpis.rollup import COLUMNS, GRACE_S, fold_pass, levels
from simulator import history

from .conftest import demo_city
from .ingest_helpers import rows
from .kpi_helpers import own_database

pytestmark = pytest.mark.slow
END = datetime(2026, 11, 20, 14, 0, tzinfo=timezone.utc)
PLAN = history.Plan(days=4, seed=11, cases_per_grid_day=0.8, fix_every_s=300, patrol_min=20,
                    alarms_per_sensor_day=0.002, end=END)


@pytest.fixture(scope="module")
def kpi_dsn(stack):
    with own_database(stack, "gcc_kpis_test") as dsn:
        yield dsn


def _rollups(dsn) -> Counter:
    """(day, org, category, counter) -> n, from kpi_daily."""
    out: Counter = Counter()
    for day, org, cat, *sums in rows(dsn, f"select day, org_code, category, {', '.join(COLUMNS.values())} "
                                           "from kpi_daily"):
        for counter, n in zip(COLUMNS, sums, strict=True):
            if n:
                out[(day, org, cat, counter)] += n
    return out


def _cases_and_events(dsn) -> tuple[dict, dict]:
    """Every case (org unit, category, opened) and its events, as stored."""
    cases = {c: (org, cat, opened) for c, org, cat, opened in rows(
        dsn, "select case_id, org_code, category, opened_at from cases")}
    events = defaultdict(list)
    for row in rows(dsn, "select id, case_id, time, command, from_state, to_state, detail from case_events "
                          "order by case_id, id"):
        events[row[1]].append(CaseEvent(*row))
    return cases, events


def _pure(dsn, now) -> Counter:
    """The same sums, from folding each case's events from scratch in Python."""
    cases, events = _cases_and_events(dsn)
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
    assert rows(kpi_dsn, "select count(*) from kpi_dirty") == [(0,)]
    assert rows(kpi_dsn, "select count(*) from case_inbox where key like '%%/hist-%%'") == [(0,)]  # not for the intake
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
    by_stage = dict(rows(kpi_dsn, "select stage, count(*) filter (where on_time is not null) from case_stage_facts "
                                   "group by stage"))
    on_time = dict(rows(kpi_dsn, "select stage, count(*) filter (where on_time) from case_stage_facts group by stage"))
    sums = rows(kpi_dsn, "select sum(dispatch_due), sum(dispatch_on_time), sum(handle_due), sum(handle_on_time) "
                          "from kpi_daily where level = 6")[0]           # the districts' rows hold every case
    assert sums == (by_stage["dispatch"], on_time["dispatch"], by_stage["handle"], on_time["handle"])
    # and day by day (a stage late before its extension counts on its first deadline's day in both)
    per_day = rows(kpi_dsn, "select day, sum(handle_due), sum(handle_on_time), sum(went_overdue) from kpi_daily "
                             "where level = 6 group by day order by day")
    raw = rows(kpi_dsn, "select d, sum(due), sum(on_time), sum(first) from ("
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
        cur.execute("insert into kpi_dirty (case_id) select case_id from cases on conflict do nothing")

    real_write = rollup.write

    def crash(cur, folded):
        real_write(cur, folded)
        raise RuntimeError("killed before the commit")

    monkeypatch.setattr(rollup, "write", crash)
    with pytest.raises(RuntimeError):
        fold_pass(conn, END, batch=100)
    monkeypatch.setattr(rollup, "write", real_write)
    assert rows(kpi_dsn, "select count(*) from kpi_daily") == [(0,)]
    assert rows(kpi_dsn, "select count(*) from kpi_dirty") == [(generated.cases,)]
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
    waiting = rows(kpi_dsn, "select count(*) from case_facts where stage is not null and not stage_late "
                             "and stage_deadline < %s", (later - timedelta(seconds=GRACE_S),))[0][0]
    assert waiting > 0                      # open cases whose clock runs past the history's end
    overdue_before = rows(kpi_dsn, "select sum(went_overdue) from kpi_daily where level = 6")[0][0]
    conn = psycopg2.connect(kpi_dsn)
    try:
        while fold_pass(conn, later).cases:
            pass
    finally:
        conn.close()
    newly = rows(kpi_dsn, "select sum(went_overdue) from kpi_daily where level = 6")[0][0] - overdue_before
    assert 0 < newly <= waiting
    assert _rollups(kpi_dsn) == _pure(kpi_dsn, later - timedelta(seconds=GRACE_S))


def test_the_report_of_a_street_sums_its_communities_and_ranks_every_one(kpi_dsn, generated):
    city = demo_city()
    street = city.streets[0]
    communities = [c.code for c in city.communities if c.code.startswith(street.code)]
    period = Period("custom", city_day(END) - timedelta(days=3), city_day(END))
    report = read(lambda sql, args: rows(kpi_dsn, sql, args), street.code, period)
    direct = dict(rows(kpi_dsn, "select left(org_code, 12), sum(due_closed)::int from kpi_daily "
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
        return rows(kpi_dsn, "select count(*), md5(string_agg(case_id || state || coalesce(deadline::text, ''), ',' "
                              "order by case_id)) from cases where case_id like 'C%%-H%%'")
    first = fingerprint()
    conn = psycopg2.connect(kpi_dsn)
    try:
        history.clear(conn)
    finally:
        conn.close()
    assert rows(kpi_dsn, "select count(*) from cases") == [(0,)]
    again = history.generate(kpi_dsn, PLAN, progress=False, what=frozenset({"cases"}))
    assert again.cases == generated.cases and fingerprint() == first


def test_the_period_before_counts_its_own_days_only_not_the_days_between(kpi_dsn, generated):
    # a week so far (Thursday and Friday, as if the week had begun on Thursday): the one before is
    # the same two days a week earlier; the days between (with history) belong to neither
    period = Period("week", date(2026, 11, 19), date(2026, 11, 20))
    before = period.previous()
    assert (before.first, before.last) == (date(2026, 11, 12), date(2026, 11, 13))
    report = read(lambda sql, args: rows(kpi_dsn, sql, args), "", period)

    def registered(first, last):
        return rows(kpi_dsn, "select coalesce(sum(registered), 0) from kpi_daily where level = 6 "
                     "and day between %s and %s", (first, last))[0][0]

    assert registered(date(2026, 11, 14), date(2026, 11, 18)) > 0          # the days between have cases
    assert report.total.count("registered") == registered(period.first, period.last) > 0
    assert report.previous.count("registered") == registered(before.first, before.last)


def test_the_field_indicators_on_crafted_rows_match_the_hand_counted_values(kpi_dsn, generated, stack):
    """Patrol, diary, alarms and announcements of one community for one day, written by hand:
    grid A patrolled by two of its members, grid B by nobody; three diary entries, two rated 4 and 5;
    two alarms raised, one acknowledged after 10 minutes; an announcement to 4 terminals, 3 read."""
    from dashboard.queries import Queries
    from kpis.patrol import Patrols

    city = demo_city()
    community = city.communities[3]
    grids = [g for g in city.grids if g.code.startswith(community.code)]
    a, b = grids[0], grids[1]
    members_a = [m for m in city.members if m.grid_code == a.code]
    day = date(2026, 10, 7)                                   # before the history: nothing else that day
    noon = datetime(2026, 10, 7, 12, 0, tzinfo=timezone.utc)
    sensors = [s for s in city.sensors if s.grid_code.startswith(community.code)][:2]
    conn = psycopg2.connect(kpi_dsn)
    with conn, conn.cursor() as cur:
        inside = a.boundary.representative_point()
        for m, grid_code in ((members_a[0], a.code), (members_a[1], None)):   # the second's fixes all outside
            for i in range(3):
                cur.execute("insert into positions (time, terminal_id, member_id, grid_code, lat, lon, source) "
                            "values (%s, %s, %s, %s, %s, %s, 'gcc')", (noon + timedelta(seconds=10 * i),
                                                                       m.terminal_id, m.member_id, grid_code,
                                                                       inside.y, inside.x))
        for i, rating in enumerate((4, 5, None)):
            cur.execute("insert into diary_entries (time, entry_id, terminal_id, grid_code, category, text) "
                        "values (%s, %s, %s, %s, 'safety', 'x')", (noon, f"d{i}", members_a[0].terminal_id, a.code))
            if rating:
                cur.execute("insert into diary_ratings values (%s, %s, %s, 'lei', %s)",
                            (members_a[0].terminal_id, f"d{i}", rating, noon))
        for i, s in enumerate(sensors):
            cur.execute("insert into device_alarms (time, alarm_id, sensor_id, alarm_type, severity, state, "
                        "grid_code) values (%s, %s, %s, 'elevator_fault', 2, 'raised', %s)",
                        (noon, f"craft-{i}", s.sensor_id, s.grid_code))
        cur.execute("delete from case_inbox where key like '%%/craft-%%'")
        cur.execute("insert into alarm_acknowledgements values ('craft-0', %s, %s, 'ana', null)",
                    (sensors[0].sensor_id, noon + timedelta(minutes=10)))
        cur.execute("insert into announcements (org_code, org_name, title, body, sent_by, sender, created_at, "
                    "expires_at, recipients) values (%s, 'c', 't', 'b', 'ana', 'Ana', %s, %s, 4) returning id",
                    (community.code, noon, noon + timedelta(days=1)))
        announcement = cur.fetchone()[0]
        terminals = [m.terminal_id for m in city.members if m.grid_code.startswith(community.code)][:4]
        for t in terminals:
            cur.execute("insert into announcement_recipients values (%s, %s)", (announcement, t))
        for i, t in enumerate(terminals[:3] + terminals[:1]):     # the first reads it twice: counted once
            cur.execute("insert into announcement_reads (time, announcement_id, terminal_id) values (%s, %s, %s)",
                        (noon + timedelta(minutes=i + 1), announcement, t))
    Patrols(city).refold_day(conn, day)              # as the engine folds them (kpis/patrol.py)
    conn.close()
    period = Period("day", day, day)
    report = read(lambda sql, args: rows(kpi_dsn, sql, args), community.code, period, city)
    t = report.total
    members = sum(1 for m in city.members if m.grid_code.startswith(community.code))
    assert (t.count("grid_days_inspected"), t.count("grid_days")) == (1, len(grids))          # A, not B
    assert (t.count("member_days_active"), t.count("member_days")) == (2, members)            # both had fixes
    assert t.rate("inspection").value == pytest.approx(1 / len(grids))
    assert report.units[a.code].rate("inspection").value == 1.0
    assert report.units[b.code].rate("inspection").value == 0.0
    assert (t.count("diary_entries"), t.count("diary_rated"), t.count("diary_rating_sum")) == (3, 2, 9)
    queries = Queries(city, stack.settings().redis_client(), kpi_dsn)
    try:
        from dashboard.authz import Scope

        field = queries.field_indicators(Scope(community.code, community.name), period)
    finally:
        queries.db.closeall()
    assert (field["alarms"], field["acknowledged"]) == (2, 1) and field["ack_s"] == pytest.approx(600)
    assert field["devices"] == sum(1 for s in city.sensors if s.grid_code.startswith(community.code))
    assert (field["recipients"], field["read"]) == (4, 3)


def test_the_duration_histograms_hold_every_duration_of_the_pure_fold_in_its_bin(kpi_dsn, generated):
    from kpis.facts import duration_bin

    cases, events = _cases_and_events(kpi_dsn)
    want: Counter = Counter()
    for case_id, (org, cat, opened) in cases.items():
        for d in fold_all(CaseFacts(case_id, org, cat, opened), events[case_id]).durations:
            want[(d.day, org[:6], d.measure, duration_bin(d.seconds))] += 1
    got: Counter = Counter()
    for day, org, measure, n, bins in rows(kpi_dsn, "select day, org_code, measure, n, bins from kpi_durations "
                                                     "where level = 6"):
        assert n == sum(bins)
        for k, count in enumerate(bins):
            if count:
                got[(day, org, measure, k)] += count
    assert got == want and sum(got.values()) > 1000



def test_the_maintainers_work_as_the_cases_engines_own_role(kpi_dsn, generated, stack):
    """The engine runs them as gcc_cases (least privilege): taking dirty rows FOR UPDATE, the facts,
    the rollups, the patrol rows and their watermark must all be granted to it."""
    from psycopg2.extensions import make_dsn, parse_dsn

    from kpis.patrol import Patrols

    engine = make_dsn(**{**parse_dsn(stack.app_settings("cases").pg_dsn), "dbname": parse_dsn(kpi_dsn)["dbname"]})
    owner = psycopg2.connect(kpi_dsn)
    with owner, owner.cursor() as cur:
        cur.execute("insert into kpi_dirty (case_id) select case_id from cases limit 20 on conflict do nothing")
    owner.close()
    conn = psycopg2.connect(engine)
    try:
        assert fold_pass(conn, END).cases >= 20
        Patrols(demo_city()).fold_pass(conn, END)
    finally:
        conn.close()

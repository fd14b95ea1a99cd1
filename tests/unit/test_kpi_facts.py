"""The assessment's facts and indicators on crafted cases: each story is walked through the real case
machine (cases.machine) at chosen minutes, its events folded (kpis.facts), and the counts checked
against values worked out by hand in the comments. Every stage limit is 60 clock minutes here, so
each deadline is the stage's start + 1 h."""
from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta

import pytest

from cases.calendar import WorkCalendar
from cases.limits import ANY, Limit, LimitRow, LimitTable, Stage, Unit, Urgency
from cases.machine import Applied, Rules, apply, open_case
from cases.model import (
    Accept,
    Actor,
    ActorKind,
    Close,
    DecideExtension,
    Dispatch,
    Feedback,
    Refuse,
    Register,
    Reopen,
    RequestExtension,
    Resume,
    Source,
    Suspend,
    Verify,
)
from core.city import CITY_TZ
from kpis.facts import CaseEvent, CaseFacts, deadline_passed, duration_bin, fold, fold_all
from kpis.indicators import Assessment, Formula, Grades, Histogram, Totals

GRID = "350102001001001"
STREET = "350102001"
RULES = Rules({1: LimitTable.of(1, [LimitRow(ANY, s, ANY, Limit(60, Unit.MINUTES)) for s in Stage])}, WorkCalendar())
DAY = date(2026, 11, 4)
T0 = datetime(2026, 11, 4, 10, 0, tzinfo=CITY_TZ)
DISPATCHER = Actor(ActorKind.USER, "ana", frozenset({"dispatcher"}), STREET)
LEADER = Actor(ActorKind.USER, "lei", frozenset({"leader"}), STREET)
HANDLER = Actor(ActorKind.TERMINAL, f"T{GRID}-1", frozenset({"grid_administrator"}), GRID)
SUPERVISOR = Actor(ActorKind.TERMINAL, f"T{GRID}-4", frozenset({"grid_supervisor"}), GRID)

WORK = {"register": (Register(), DISPATCHER), "dispatch": (Dispatch(HANDLER.name, GRID), DISPATCHER),
        "accept": (Accept(), HANDLER), "feedback": (Feedback("done"), HANDLER), "pass": (Verify(True), SUPERVISOR),
        "fail": (Verify(False, "still broken"), SUPERVISOR), "close": (Close(), DISPATCHER),
        "refuse": (Refuse("duplicate"), DISPATCHER), "suspend": (Suspend("road works"), LEADER),
        "resume": (Resume(), LEADER), "reopen": (Reopen("back again"), LEADER),
        "ask": (RequestExtension(Limit(60, Unit.MINUTES), "part on order"), HANDLER),
        "approve": (DecideExtension(True), LEADER)}


def story(steps: list[tuple[float, str]], start: datetime = T0, source: Source = Source.REPORT,
          case_id: str = "C1") -> list[CaseEvent]:
    """The events of a case opened at `start` and taken through `steps` (minutes after start, step)."""
    opened = open_case(case_id, "exposed_garbage", Urgency.NORMAL, source, GRID, GRID,
                       Actor.system("intake"), start, RULES)
    assert isinstance(opened, Applied)
    case, events = opened.case, list(opened.events)
    for minutes, step in steps:
        command, actor = WORK[step]
        outcome = apply(case, command, actor, start + timedelta(minutes=minutes), RULES)
        assert isinstance(outcome, Applied), (step, outcome)
        case = outcome.case
        events.extend(outcome.events)
    return [CaseEvent(i, e.case_id, e.at, e.command, e.from_state.value if e.from_state else None, e.to_state.value,
                      dict(e.detail)) for i, e in enumerate(events, 1)]


def facts_for(events: list[CaseEvent], start: datetime = T0) -> CaseFacts:
    return CaseFacts(events[0].case_id, GRID, "exposed_garbage", start)


def folded(events, now=None, start=T0):
    return fold_all(facts_for(events, start), events, now=now)


def counts(fo) -> Counter:
    """(day, counter) -> n, summed."""
    total: Counter = Counter()
    for c in fo.counts:
        total[(c.day, c.counter)] += c.n
    return +total


def on(day: date, **expected) -> Counter:
    return Counter({(day, k.replace("__", ":")): v for k, v in expected.items()})


HAPPY = [(10, "register"), (20, "dispatch"), (25, "accept"), (55, "feedback"), (60, "pass"), (70, "close")]


def test_a_case_done_in_time_counts_every_stage_on_time_and_its_durations():
    fo = folded(story(HAPPY))
    stage_counts = {f"stage__{s}__{w}": 1 for s in ("register", "dispatch", "accept", "handle", "verify", "close")
                    for w in ("due", "on_time")}
    assert counts(fo) == on(DAY, registered=1, dispatched=1, handled=1, closed=1, due=1, due_closed=1,
                            due_on_time=1, assessable=1, **stage_counts)
    # report 10:00 → registered 10:10 → dispatched 10:20 → accepted 10:25 → feedback 10:55 → closed 11:10
    assert {d.measure: d.seconds for d in fo.durations} == {"register": 600, "dispatch": 600, "accept": 300,
                                                          "handle": 1800, "close": 3600}
    assert fo.facts.closed and not fo.facts.late and fo.facts.due_day == DAY and fo.facts.stage is None


def test_handling_past_its_deadline_counts_late_on_the_deadlines_day_and_the_case_is_due_from_then():
    # accepted 10:25: handling due by 11:25; feedback at 12:00 (35 min late)
    fo = folded(story([(10, "register"), (20, "dispatch"), (25, "accept"), (120, "feedback"), (125, "pass"),
                       (130, "close")]))
    c = counts(fo)
    assert c[(DAY, "stage:handle:due")] == 1 and c[(DAY, "stage:handle:on_time")] == 0
    assert c[(DAY, "went_overdue")] == 1
    assert c[(DAY, "due")] == 1 and c[(DAY, "due_closed")] == 1 and c[(DAY, "due_on_time")] == 0
    late = [s for s in fo.stages if s.stage == "handle"]
    assert [(s.ended_at, s.on_time) for s in late] == [(None, False), (T0 + timedelta(minutes=120), False)]


def test_an_open_stage_goes_late_when_now_passes_its_deadline_and_only_once():
    events = story([(10, "register"), (20, "dispatch"), (25, "accept")])
    early = folded(events, now=T0 + timedelta(minutes=80))     # 11:20: handling still in time
    assert counts(early)[(DAY, "went_overdue")] == 0 and early.facts.due_day is None
    late = deadline_passed(early.facts, T0 + timedelta(minutes=90))
    assert Counter({(c.day, c.counter): c.n for c in late.counts}) == on(
        DAY, stage__handle__due=1, went_overdue=1, due=1, assessable=1)
    again = deadline_passed(late.facts, T0 + timedelta(minutes=200))
    assert again.counts == () and again.facts == late.facts


def test_a_stage_late_before_its_extension_counts_on_its_first_deadlines_day():
    # accepted 10:25, due 11:25 (passes); 60 min more approved at 12:00 (due 12:25); feedback 12:10
    fo = folded(story([(10, "register"), (20, "dispatch"), (25, "accept"), (90, "ask"), (120, "approve"),
                       (130, "feedback")]))
    handle = [s for s in fo.stages if s.stage == "handle"]
    assert [(s.on_time, s.counted_at) for s in handle] == [(False, T0 + timedelta(minutes=85)), (False, None)]
    c = counts(fo)
    assert c[(DAY, "stage:handle:due")] == 1 and c[(DAY, "stage:handle:on_time")] == 0


def test_an_approved_extension_moves_the_deadline_and_takes_the_case_out_of_the_on_time_closure_denominator():
    # accepted 10:25 (due 11:25); extension of 60 min approved at 11:00: due 12:25; feedback 12:00 is on time
    fo = folded(story([(10, "register"), (20, "dispatch"), (25, "accept"), (40, "ask"), (60, "approve"),
                       (120, "feedback"), (125, "pass"), (130, "close")]))
    c = counts(fo)
    assert c[(DAY, "stage:handle:due")] == 1 and c[(DAY, "stage:handle:on_time")] == 1
    assert c[(DAY, "extensions")] == 1 and c[(DAY, "went_overdue")] == 0
    assert c[(DAY, "due")] == 1 and c[(DAY, "due_extended")] == 1 and c[(DAY, "assessable")] == 0
    assert c[(DAY, "due_on_time")] == 0 and c[(DAY, "due_closed")] == 1


def test_a_suspended_stage_is_not_counted_and_the_case_leaves_the_on_time_denominator():
    # handling from 10:25, suspended at 10:40 (that stage is not counted), resumed 13:00 (due 14:00),
    # feedback 13:30: one handling stage counted, on time
    fo = folded(story([(10, "register"), (20, "dispatch"), (25, "accept"), (40, "suspend"), (180, "resume"),
                       (210, "feedback"), (215, "pass"), (220, "close")]))
    c = counts(fo)
    assert c[(DAY, "stage:handle:due")] == 1 and c[(DAY, "stage:handle:on_time")] == 1
    assert c[(DAY, "suspensions")] == 1
    assert c[(DAY, "due_suspended")] == 1 and c[(DAY, "assessable")] == 0 and c[(DAY, "due_closed")] == 1
    assert [s.on_time for s in fo.stages if s.stage == "handle"] == [None, True]


def test_rework_counts_a_failed_verification_and_a_second_handling_stage():
    fo = folded(story([(10, "register"), (20, "dispatch"), (25, "accept"), (50, "feedback"), (55, "fail"),
                       (80, "feedback"), (85, "pass"), (90, "close")]))
    c = counts(fo)
    assert c[(DAY, "handled")] == 2 and c[(DAY, "reworked")] == 1
    assert c[(DAY, "stage:handle:due")] == 2 and c[(DAY, "stage:verify:due")] == 2
    # the time to handle is measured once: acceptance 10:25 → first feedback 10:50
    assert [d.seconds for d in fo.durations if d.measure == "handle"] == [1500]
    totals = Totals()
    for (_, counter), n in c.items():
        totals.add(counter, n)
    assert totals.rate("rework").value == 0.5


def test_a_case_crossing_midnight_counts_each_step_on_its_own_city_day():
    start = datetime(2026, 11, 4, 23, 20, tzinfo=CITY_TZ)       # registered 23:30, feedback 00:20 the next day
    fo = folded(story([(10, "register"), (15, "dispatch"), (20, "accept"), (60, "feedback"), (65, "pass"),
                       (70, "close")], start=start), start=start)
    c = counts(fo)
    nxt = DAY + timedelta(days=1)
    assert c[(DAY, "registered")] == 1 and c[(nxt, "registered")] == 0
    assert c[(nxt, "handled")] == 1 and c[(nxt, "due")] == 1 and c[(nxt, "closed")] == 1 and c[(DAY, "due")] == 0


def test_the_day_is_the_citys_day_not_utc():
    start = datetime(2026, 11, 4, 7, 30, tzinfo=CITY_TZ)        # 23:30 UTC the day before
    fo = folded(story([(10, "register")], start=start), start=start)
    assert counts(fo)[(DAY, "registered")] == 1


def test_a_report_refused_after_its_register_deadline_is_late_but_never_due_to_close():
    fo = folded(story([(90, "refuse")]))
    c = counts(fo)
    assert c[(DAY, "stage:register:due")] == 1 and c[(DAY, "stage:register:on_time")] == 0
    assert c[(DAY, "refused")] == 1 and c[(DAY, "went_overdue")] == 1 and c[(DAY, "due")] == 0


def test_a_case_refused_after_going_overdue_leaves_its_cohort():
    # registered 10:10, dispatch due 11:10, passes (the case is due), refused at 12:00
    events = story([(10, "register"), (120, "refuse")])
    c = counts(folded(events))
    assert c[(DAY, "due")] == 0 and c[(DAY, "assessable")] == 0 and c[(DAY, "refused")] == 1


def test_a_reopened_case_is_not_closed_until_it_closes_again():
    reopened = folded(story(HAPPY + [(100, "reopen")]))
    assert counts(reopened)[(DAY, "due_closed")] == 0 and counts(reopened)[(DAY, "closed")] == 1
    again = folded(story(HAPPY + [(100, "reopen"), (120, "feedback"), (125, "pass"), (130, "close")]))
    c = counts(again)
    assert c[(DAY, "due_closed")] == 1 and c[(DAY, "closed")] == 2 and c[(DAY, "reopened")] == 1
    assert c[(DAY, "due")] == 1
    assert [d.measure for d in again.durations].count("close") == 1


def test_an_sos_is_registered_when_it_opens_and_has_no_register_stage():
    fo = folded(story([(5, "dispatch"), (8, "accept"), (20, "feedback")], source=Source.SOS))
    c = counts(fo)
    assert c[(DAY, "registered")] == 1 and c[(DAY, "stage:register:due")] == 0
    assert [d.measure for d in fo.durations] == ["dispatch", "accept", "handle"]


def test_folding_the_same_events_again_counts_nothing_twice():
    events = story(HAPPY)
    first = folded(events)
    again = fold_all(first.facts, events)
    assert again.counts == () and again.durations == () and again.facts == first.facts
    one_by_one = facts_for(events)
    for event in events:
        one_by_one = fold(one_by_one, event).facts
    assert one_by_one == first.facts


# --- indicators ---------------------------------------------------------------------------------------

def totals_of(**counts) -> Totals:
    t = Totals()
    for k, n in counts.items():
        t.add(k.replace("__", ":"), n)
    return t


def test_rates_of_two_units_together_are_sums_over_sums_never_the_mean_of_their_rates():
    a = totals_of(due=10, due_closed=9)          # 90 %
    b = totals_of(due=90, due_closed=45)         # 50 %
    both = Totals()                              # as the report sums two units' rollup rows
    for part in (a, b):
        for counter, n in part.counts.items():
            both.add(counter, n)
    assert both.rate("closure").value == pytest.approx(54 / 100)      # not (0.9 + 0.5) / 2
    assert both.rate("closure").numerator == 54 and both.rate("closure").denominator == 100
    assert Totals().rate("closure").value is None


def test_the_default_score_is_the_vendors_formula_minus_the_overdue_penalty():
    t = totals_of(stage__handle__on_time=18, stage__handle__due=20, due=20, due_closed=19, handled=20, reworked=2,
                  went_overdue=1)
    # 0.9 × 60 + 0.95 × 30 + (1 − 0.1) × 10 − 10 × 0.05 = 54 + 28.5 + 9 − 0.5 = 91
    assert Assessment().formula.score(t) == pytest.approx(91.0)
    assert Assessment().grades.grade(91.0) == "A"


def test_the_score_needs_something_due_but_no_rework_when_nothing_was_handled():
    assert Assessment().formula.score(Totals()) is None
    t = totals_of(stage__handle__on_time=1, stage__handle__due=1, due=1, due_closed=1)
    assert Assessment().formula.score(t) == pytest.approx(100.0)   # rework 0/0 counts as none


@pytest.mark.parametrize("score, grade", [(90, "A"), (89.99, "B"), (75, "B"), (60, "C"), (40, "D"), (39.9, "E"),
                                          (-5, "E")])
def test_grades_by_score(score, grade):
    assert Grades.parse("A:90,B:75,C:60,D:40,E:0").grade(score) == grade


def test_a_configured_formula_is_checked_and_used():
    f = Formula("closure * 100 - min(rework, 0.2) * 50")
    assert f.score(totals_of(due=4, due_closed=3, handled=10, reworked=5)) == pytest.approx(75 - 10)
    for bad in ("closure +", "import_os * 1", "__import__('os')", "closure ** 2", "closure.real"):
        with pytest.raises(ValueError):
            Formula(bad)


def test_p90_from_the_log_histogram_is_within_its_bin_of_the_true_value():
    seconds = [60 * (i + 1) for i in range(100)]         # 1..100 minutes: the true p90 is 90 minutes
    h = Histogram()
    for s in seconds:
        h.add(duration_bin(s), 1, s)
    assert h.mean_s == pytest.approx(sum(seconds) / 100)
    assert 90 * 60 <= h.quantile_s(0.9) <= 90 * 60 * 1.1


# --- tracks and patrols -----------------------------------------------------------------------------

def _track(n: int, every_s: int = 5) -> list:
    """A walk east along the equator-ish latitude of the city at 1.2 m/s, standing still for 5 minutes
    in the middle."""
    from kpis.tracks import Fix

    fixes, lon = [], 119.30
    for i in range(n):
        if not n // 2 <= i < n // 2 + 60:
            lon += 6 / 100_000
        fixes.append(Fix(T0 + timedelta(seconds=every_s * i), 26.08, lon))
    return fixes


def test_a_track_has_its_stop_distance_and_times():
    from kpis.tracks import Track, summary

    s = summary(Track.of(_track(360)), min_stop_s=180, radius_m=30)   # 30 min at 5 s; 5 min still from minute 15
    # the 60 fixes standing, and the 5 walking up within 30 m of where the stop began (6 m a fix): 65 × 5 s
    assert len(s.stops) == 1 and s.stops[0].seconds == 325 and s.stops[0].fixes == 66
    assert s.distance_m == pytest.approx(299 * 6 / 100_000 * 111_320 * 0.8983, rel=0.02)   # cos(26.08°)
    assert s.moving_s + s.stopped_s == pytest.approx(359 * 5)


def test_a_patrol_folded_window_by_window_equals_the_whole_day_at_once():
    from shapely.geometry import box

    from kpis.tracks import PatrolDay, Track, coverage, extend, grid_cells, summary

    fixes = _track(720)
    grid = box(119.30, 26.075, 119.315, 26.085)               # the walk leaves it after ~1.4 km
    cells = grid_cells(grid)
    inside = [grid.contains(__import__("shapely").geometry.Point(f.lon, f.lat)) for f in fixes]
    whole = extend(PatrolDay(), fixes, inside, cells)
    day = PatrolDay()
    for a in range(0, 720, 97):                               # windows of odd sizes
        day = extend(day, fixes[a:a + 97], inside[a:a + 97], cells)
    assert day == whole
    covered, visited = coverage(Track.of(fixes), grid, cells)
    assert whole.cells == frozenset(visited) and len(visited) == covered.visited > 0
    assert whole.seconds_in_grid == pytest.approx(covered.seconds_in_grid)
    assert whole.distance_m == pytest.approx(summary(Track.of(fixes)).distance_m)
    assert 0 < covered.share < 1 and covered.inspected and whole.fixes_in_grid == sum(inside) < len(fixes)


def _stops_fix_by_fix(fixes, min_stop_s, radius_m):
    """The stop rule applied one fix at a time (the reference the array version must equal)."""
    from kpis.tracks import metres

    found, i = [], 0
    while i < len(fixes):
        j = i + 1
        while j < len(fixes) and metres(fixes[i].lat, fixes[i].lon, fixes[j].lat, fixes[j].lon) <= radius_m:
            j += 1
        if (fixes[j - 1].time - fixes[i].time).total_seconds() >= min_stop_s:
            found.append((fixes[i].time, fixes[j - 1].time, j - i))
            i = j
        else:
            i += 1
    return found


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("rounds", [1, 32])            # fixes settled by the first rounds, or by the scans
def test_stops_found_in_whole_arrays_are_the_rule_applied_fix_by_fix(seed, rounds, monkeypatch):
    import random

    from kpis import tracks
    from kpis.tracks import Fix, Track, stops

    monkeypatch.setattr(tracks, "ROUNDS", rounds)
    rng, fixes, lat, lon, t = random.Random(seed), [], 26.08, 119.30, T0
    for _ in range(150):                       # walks, dawdles and stands, with gaps and GPS jumps
        mode = rng.choices(["walk", "dawdle", "stand", "jump"], [5, 3, 3, 0.05])[0]
        for _ in range(rng.randint(1, 120)):
            step = {"walk": 6, "dawdle": 1.5, "stand": 0.3, "jump": 400}[mode] / 111_320
            lat, lon = lat + rng.gauss(0, step), lon + rng.gauss(0, step)
            t += timedelta(seconds=rng.choice([5, 5, 5, 10, 60]))
            fixes.append(Fix(t, lat, lon))
    for min_stop_s, radius_m in [(180, 30), (60, 10), (600, 50), (0, 5)]:
        got = [(s.start, s.end, s.fixes) for s in stops(Track.of(fixes), min_stop_s, radius_m)]
        assert got == _stops_fix_by_fix(fixes, min_stop_s, radius_m)
        assert got, "the track has stops to find"


# --- periods --------------------------------------------------------------------------------------------

def test_periods_so_far_are_compared_with_the_same_span_before():
    from kpis.report import Period

    today = date(2026, 12, 3)
    month = Period.of("month", today, today=today)
    assert (month.first, month.last, month.whole) == (date(2026, 12, 1), today, False)
    assert (month.previous().first, month.previous().last) == (date(2026, 11, 1), date(2026, 11, 3))
    assert Period.of("month", date(2026, 3, 31)).previous().last == date(2026, 2, 28)   # whole month: whole before
    week = Period.of("week", today, today=today)                                          # Thursday
    assert (week.first, week.last) == (date(2026, 11, 30), today)
    assert (week.previous().first, week.previous().last) == (date(2026, 11, 23), date(2026, 11, 26))
    assert Period.of("day", today).previous().first == date(2026, 12, 2)
    custom = Period.of("custom", date(2026, 11, 10), date(2026, 11, 19))
    assert (custom.previous().first, custom.previous().last) == (date(2026, 10, 31), date(2026, 11, 9))
    for bad in (("custom", date(2026, 11, 10), date(2026, 11, 9)), ("custom", date(2025, 1, 1), date(2026, 6, 1)),
                ("year", today, None)):
        with pytest.raises(ValueError):
            Period.of(*bad)

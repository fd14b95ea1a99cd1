"""What the KPI page shows for an org unit and a period, read from the rollups in two statements
(counters, durations), each one scan with grouping sets: the scope's totals for the period and the
one before it (for the change ▲▼), each child unit's (the ranking), each category's and each day's.

`rank` scores every child unit with the configured formula, grades it and places it, next to its
place in the previous period.
"""
from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from core.city import CITY_TZ
from core.orgcodes import Level, contains, level_of
from kpis.indicators import Assessment, Totals
from kpis.rollup import COLUMNS

Rows = Callable[[str, tuple], list[tuple]]
PERIOD_KINDS = ("day", "week", "month", "custom")
MAX_DAYS = 400


@dataclass(frozen=True)
class Period:
    kind: str                   # day, week (Monday to Sunday), month, custom
    first: date
    last: date                  # inclusive

    @classmethod
    def of(cls, kind: str, anchor: date, last: date | None = None, today: date | None = None) -> Period:
        """The day, week or month that holds `anchor` (to `today` at most: this month so far);
        custom: `anchor` to `last`."""
        if kind in ("day", "week", "month"):
            first = anchor if kind == "day" else anchor - timedelta(days=anchor.weekday()) if kind == "week" \
                else anchor.replace(day=1)
            end = first if kind == "day" else first + timedelta(days=6) if kind == "week" else _month_end(first)
            return cls(kind, first, max(first, min(end, today)) if today else end)
        if kind == "custom":
            if last is None or last < anchor:
                raise ValueError("a custom period needs a last day on or after its first")
            if (last - anchor).days >= MAX_DAYS:
                raise ValueError(f"a custom period is at most {MAX_DAYS} days")
            return cls(kind, anchor, last)
        raise ValueError(f"a period is one of {', '.join(PERIOD_KINDS)}, not {kind!r}")

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def previous(self) -> Period:
        """The same span of the period before: the month before (as many days of it as this one
        has so far), the week before (the same weekdays), the day or range just before."""
        if self.kind == "month":
            first = (self.first - timedelta(days=1)).replace(day=1)
            return Period("month", first, min(_month_end(first), first + timedelta(days=self.days - 1)))
        first = self.first - timedelta(days=7 if self.kind == "week" else self.days)
        return Period(self.kind, first, first + timedelta(days=self.days - 1))

    @property
    def whole(self) -> bool:
        """Whether it is the whole day, week or month (not one so far)."""
        if self.kind == "month":
            return self.last == _month_end(self.first)
        return self.kind != "week" or self.days == 7

    def label(self) -> str:
        if self.kind == "day":
            return self.first.isoformat()
        if self.kind == "month":
            return f"{self.first:%Y-%m}" + ("" if self.whole else f" (1–{self.last.day})")
        return f"{self.first.isoformat()} – {self.last.isoformat()}"


def child_length(scope_code: str) -> int | None:
    """The code length of the scope's children (the units ranked), None for a grid."""
    if not scope_code:
        return Level.DISTRICT.code_length
    child = level_of(scope_code).child
    return child.code_length if child else None


@dataclass
class Report:
    scope_code: str
    period: Period
    total: Totals = field(default_factory=Totals)
    previous: Totals = field(default_factory=Totals)
    units: dict[str, Totals] = field(default_factory=dict)           # child code -> this period
    units_previous: dict[str, Totals] = field(default_factory=dict)
    categories: dict[str, Totals] = field(default_factory=dict)      # this period
    days: dict[date, Totals] = field(default_factory=dict)           # this period, per day


_SUMS = ", ".join(f"sum({c})" for c in COLUMNS.values())


def read(rows: Rows, scope_code: str, period: Period, city=None) -> Report:
    """The report of `scope_code` ("" the city) for `period` and the one before, from the rollups:
    the scope's own rows (the city's: its districts') for its totals, categories and days, its
    children's for the ranking, each a few rows a day (kpis/rollup.py keeps every level); with
    `city` (its grids and members, the patrol rates' denominators) also patrols and the diary."""
    report = Report(scope_code, period)
    before = period.previous()
    n = child_length(scope_code)
    # this period's days and the one before's (which need not touch: a month so far, the same days of the last)
    days = "(day between %s and %s or day between %s and %s)"
    spans = (period.first, period.last, before.first, before.last)
    own = (len(scope_code) or 6, scope_code)
    for cur, g_category, g_day, category, day, *sums in rows(
            f"select day >= %s as cur, grouping(category), grouping(day), category, day, {_SUMS} from kpi_daily "
            f"where level = %s and org_contains(%s, org_code) and {days} "
            "group by grouping sets ((cur), (cur, category), (cur, day))", (period.first, *own, *spans)):
        totals = _totals(sums)
        if not g_category:
            if cur:
                report.categories[category] = totals
        elif not g_day:
            if cur:
                report.days[day] = totals
        elif cur:
            report.total = totals
        else:
            report.previous = totals
    if n is not None:
        for cur, unit, *sums in rows(
                f"select day >= %s as cur, org_code, {_SUMS} from kpi_daily where level = %s "
                f"and org_contains(%s, org_code) and {days} group by cur, org_code",
                (period.first, n, scope_code, *spans)):
            (report.units if cur else report.units_previous)[unit] = _totals(sums)
    for level, unit, measure, count, total_s, bins in rows(
            "select level, org_code, measure, n, total_s, bins from kpi_durations "
            "where day between %s and %s and level in (%s, %s) and org_contains(%s, org_code)",
            (period.first, period.last, own[0], n or own[0], scope_code)):
        targets = ([report.total] if level == own[0] else []) + \
                  ([report.units.setdefault(unit, Totals())] if level == n else [])   # the city: both
        for target in targets:              # (the scope's own rows: the city's are its districts')
            target.add_histogram(measure, int(count), float(total_s), bins)
    if city is not None:
        pn = n or len(scope_code)
        _patrols(rows, report, city, pn, before, (period.first, pn, pn, scope_code, *spans))
        _diary(rows, report, pn, (period.first, period.last + timedelta(days=1)), city)
    return report


def _diary(rows: Rows, report: Report, n: int, days: tuple[date, date], city) -> None:
    """People's-feelings diary entries of the period: how many, per member, and their rated quality."""
    start, end = (datetime.combine(d, datetime.min.time(), CITY_TZ) for d in days)
    prefix = report.scope_code
    members = [m.grid_code for m in city.members if contains(prefix, m.grid_code)]
    report.total.add("members", len(members))
    for unit, t in report.units.items():
        t.add("members", sum(1 for m in members if contains(unit, m)))
    for g_unit, unit, entries, rated, rating_sum in rows(
            "select grouping(unit), unit, count(*), count(r.rating), coalesce(sum(r.rating), 0) from "
            "(select *, case when length(grid_code) >= %s then left(grid_code, %s) end as unit from diary_entries "
            "where time >= %s and time < %s and org_contains(%s, grid_code)) d left join diary_ratings r "
            "using (terminal_id, entry_id) group by grouping sets ((), (unit))", (n, n, start, end, prefix)):
        totals = report.total if g_unit else report.units.get(unit) if unit is not None else None
        if totals is None:
            continue
        totals.add("diary_entries", int(entries))
        totals.add("diary_rated", int(rated))
        totals.add("diary_rating_sum", int(rating_sum))


def _patrols(rows: Rows, report: Report, city, n: int, before: Period, args: tuple) -> None:
    """The inspection and active rates: grid-days patrolled and member-days with fixes, over the
    grids' and members' days (the period so far)."""
    prefix = report.scope_code
    grids = [g.code for g in city.grids if contains(prefix, g.code)]
    members = [m.grid_code for m in city.members if contains(prefix, m.grid_code)]
    for cur, totals, days in ((True, report.total, report.period.days), (False, report.previous, before.days)):
        totals.add("grid_days", len(grids) * days)
        totals.add("member_days", len(members) * days)
        by_unit = report.units if cur else report.units_previous
        for unit in {g[:n] for g in grids if len(g) >= n}:
            t = by_unit.setdefault(unit, Totals())
            t.add("grid_days", sum(1 for g in grids if contains(unit, g)) * days)
            t.add("member_days", sum(1 for m in members if contains(unit, m)) * days)
    first, n_, _, scope_code, *spans = args
    own = len(prefix) or 6
    for cur, level, unit, inspected, active in rows(
            "select day >= %s as cur, level, org_code, sum(grid_days_inspected), sum(member_days_active) "
            "from patrol_units_daily where level in (%s, %s) and org_contains(%s, org_code) "
            "and (day between %s and %s or day between %s and %s) group by 1, 2, 3",
            (first, own, n, scope_code, *spans)):
        targets = ([report.total if cur else report.previous] if level == own else []) + \
                  ([(report.units if cur else report.units_previous).setdefault(unit, Totals())]
                   if level == n and len(prefix) < n else [])
        for totals in targets:
            totals.add("grid_days_inspected", int(inspected))
            totals.add("member_days_active", int(active))


def _totals(sums) -> Totals:
    t = Totals()
    for counter, n in zip(COLUMNS, sums, strict=True):
        if n:
            t.add(counter, int(n))
    return t


@dataclass(frozen=True)
class Ranked:
    code: str
    totals: Totals
    score: float | None
    grade: str | None
    place: int | None           # 1 = best; None: no score (nothing due)
    previous_place: int | None
    previous_score: float | None

    @property
    def moved(self) -> int | None:
        """Places gained since the previous period (negative: lost), None if either is unknown."""
        if self.place is None or self.previous_place is None:
            return None
        return self.previous_place - self.place


def rank(report: Report, codes: list[str], assessment: Assessment) -> list[Ranked]:
    """Every child unit (`codes`, in their own order for ties and for those without a score),
    best score first, with its place in the previous period."""
    def places(by_unit: dict[str, Totals]) -> tuple[dict[str, int], dict[str, float | None]]:
        scores = {c: assessment.formula.score(by_unit.get(c, Totals())) for c in codes}
        order = sorted((c for c in codes if scores[c] is not None), key=lambda c: -scores[c])
        placed, last_score, last_place = {}, None, 0
        for i, c in enumerate(order, 1):       # equal scores share a place
            if scores[c] != last_score:
                last_place, last_score = i, scores[c]
            placed[c] = last_place
        return placed, scores

    now, now_scores = places(report.units)
    before, before_scores = places(report.units_previous)
    ranked = [Ranked(c, report.units.get(c, Totals()), now_scores[c], assessment.grades.grade(now_scores[c]),
                     now.get(c), before.get(c), before_scores[c]) for c in codes]
    return sorted(ranked, key=lambda r: (r.place is None, r.place or 0))


def _month_end(first: date) -> date:
    return first.replace(day=calendar.monthrange(first.year, first.month)[1])

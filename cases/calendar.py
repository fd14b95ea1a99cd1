"""Working time: which days are workdays, which hours of them are worked, and a limit added to a time.

China's calendar is not Mon–Fri: the State Council's notice each year moves weekend days to make
bridges around the holidays (调休), so some Saturdays and Sundays are workdays. The days come from
`chinesecalendar` (it lists each year's notice) where it covers the year; for a year it does not
cover (the notice comes out late in the year before), from Mon–Fri without the statutory holidays
(python-holidays' China, its "observed" bridge days left out: they come with the notice), marked
provisional and said in the log and on the admin page. An admin's override of a day wins over both.

Deadlines are computed once, when a stage starts, and stored; this module only computes them.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import Enum
from functools import lru_cache

from cases.limits import Limit, Unit
from core.city import CITY_TZ

log = logging.getLogger(__name__)

# Office hours of the street and community offices (the usual 8:30-12:00, 14:00-17:30 plus the
# evening half hour many keep: configurable per deployment).
DEFAULT_HOURS = ((time(8, 30), time(12, 0)), (time(14, 0), time(18, 0)))
_MAX_DAYS_AHEAD = 3 * 366       # a deadline further than this is a configuration error, not a date


class DaySource(str, Enum):
    NOTICE = "notice"               # the State Council's notice, as chinesecalendar lists it
    PROVISIONAL = "provisional"     # Mon–Fri without the statutory holidays: no notice for this year yet
    ADMIN = "admin"                 # an admin's override


@dataclass(frozen=True)
class Day:
    day: date
    workday: bool
    source: DaySource
    name: str = ""                  # the holiday or make-up day's name, if any


def library_day(day: date) -> Day:
    """What the libraries say of one day (chinesecalendar if it covers the year, else provisional)."""
    return _library_year(day.year)[day]


@lru_cache(maxsize=16)
def _library_year(year: int) -> dict[date, Day]:
    import chinese_calendar
    import holidays

    first, days = date(year, 1, 1), {}
    try:
        chinese_calendar.is_workday(first)
        covered = True
    except NotImplementedError:
        covered = False
        log.warning("chinesecalendar has no notice for %s: its workdays are Mon-Fri without the statutory "
                    "holidays, provisional until an admin enters the notice", year)
    statutory = {d: name for d, name in holidays.China(years=year).items() if "observed" not in name.lower()}
    d = first
    while d.year == year:
        if covered:
            _, name = chinese_calendar.get_holiday_detail(d)
            workday = chinese_calendar.is_workday(d)
            if workday and d.weekday() >= 5:          # a weekend day worked to bridge a holiday (调休)
                name = f"make-up working day ({name})" if name else "make-up working day"
            days[d] = Day(d, workday, DaySource.NOTICE, str(name or ""))
        else:
            days[d] = Day(d, d.weekday() < 5 and d not in statutory, DaySource.PROVISIONAL, statutory.get(d, ""))
        d += timedelta(days=1)
    return days


def library_years(years: Iterable[int]) -> list[Day]:
    """Every day of these years, as the libraries give them (what the calendar table is seeded with)."""
    return [day for year in years for day in _library_year(year).values()]


@dataclass(frozen=True)
class WorkCalendar:
    """Workdays (overrides over the libraries) and the hours worked on each, in the city's time."""
    overrides: Mapping[date, bool] = field(default_factory=dict)     # the calendar table's days
    hours: tuple[tuple[time, time], ...] = DEFAULT_HOURS
    tz: object = CITY_TZ

    def __post_init__(self) -> None:
        if not self.hours or any(start >= end for start, end in self.hours) or \
                any(a[1] > b[0] for a, b in zip(self.hours, self.hours[1:], strict=False)):
            raise ValueError(f"working hours must be ordered, non-empty periods: {self.hours}")

    def is_workday(self, day: date) -> bool:
        known = self.overrides.get(day)
        return known if known is not None else library_day(day).workday

    @property
    def minutes_per_day(self) -> int:
        return sum((_minutes(end) - _minutes(start)) for start, end in self.hours)

    def add(self, start: datetime, limit: Limit) -> datetime:
        """The time `limit` after `start`: clock minutes straight on, working minutes (hours, days)
        counted only inside working periods of workdays. One working day is one day's working
        minutes, so a day's limit from Tuesday 10:00 ends Wednesday 10:00; started in the evening,
        at the weekend or on a holiday, the count begins with the next working period."""
        if limit.unit is Unit.MINUTES:
            return start + timedelta(minutes=limit.amount)
        return self.add_working_minutes(start, limit.working_minutes(self.minutes_per_day))

    def add_working_minutes(self, start: datetime, minutes: float) -> datetime:
        local = start.astimezone(self.tz)
        left = timedelta(minutes=minutes)
        day = local.date()
        for _ in range(_MAX_DAYS_AHEAD):
            if self.is_workday(day):
                for begin, end in self.hours:
                    period_start = datetime.combine(day, begin, self.tz)
                    period_end = datetime.combine(day, end, self.tz)
                    if period_end <= local:
                        continue
                    at = max(period_start, local)
                    if at + left <= period_end:
                        return (at + left).astimezone(start.tzinfo)
                    left -= period_end - at
            day += timedelta(days=1)
        raise ValueError(f"no working time for {minutes} minutes within {_MAX_DAYS_AHEAD} days of {start}: "
                         "is every day marked a holiday?")

    def working_minutes_between(self, start: datetime, end: datetime) -> float:
        """Working minutes from `start` to `end` (0 if end is not after start)."""
        if end <= start:
            return 0.0
        total, day = timedelta(), start.astimezone(self.tz).date()
        last = end.astimezone(self.tz).date()
        while day <= last:
            if self.is_workday(day):
                for begin, finish in self.hours:
                    a = max(datetime.combine(day, begin, self.tz), start)
                    b = min(datetime.combine(day, finish, self.tz), end)
                    if b > a:
                        total += b - a
            day += timedelta(days=1)
        return total.total_seconds() / 60


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


@dataclass(frozen=True)
class ScaledCalendar(WorkCalendar):
    """A demo's or a test's clock: every limit runs as clock time, `time_scale` times as long (1/60:
    an hour in a minute, a working day in 7.5 minutes). The screens say so when it is on."""
    time_scale: float = 1.0

    def add(self, start: datetime, limit: Limit) -> datetime:
        minutes = limit.amount if limit.unit is Unit.MINUTES else limit.working_minutes(self.minutes_per_day)
        return start + timedelta(minutes=minutes * self.time_scale)

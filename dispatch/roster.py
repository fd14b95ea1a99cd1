"""The duty roster: who is on duty on a day (city time), and when (`duty_roster`).

A day with no rows has no roster: everyone counts as on duty, and the screens say so. A day with
rows: a member with a row is on duty from `starts` to `ends` (city time), one without is off duty
that day. The demo writes its own roster (`demo_rows`: everyone on duty around the clock, each
grid member but the supervisor resting one day a week, on a weekday that differs within the grid);
a deployment loads its own.

`RosterCache` reads a day once a minute at most, for the console's candidates and the cases
engine's picks alike.
"""
from __future__ import annotations

import threading
import time as clock
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from core.city import CITY_TZ, City
from core.roles import Role

REFRESH_S = 60.0
ALL_DAY = (time(0, 0), time(23, 59, 59))


@dataclass(frozen=True)
class RosterDay:
    day: date
    shifts: dict[str, tuple[time, time]] | None      # terminal -> (starts, ends); None: no roster that day

    @property
    def loaded(self) -> bool:
        return self.shifts is not None

    def on_duty(self, terminal_id: str, at: datetime) -> bool:
        if self.shifts is None:
            return True
        shift = self.shifts.get(terminal_id)
        if shift is None:
            return False
        local = at.astimezone(CITY_TZ).time()
        starts, ends = shift
        return starts <= local <= ends


ROSTER_SQL = "select terminal_id, starts, ends from duty_roster where day = %s"


def day_of(day: date, rows: list[tuple]) -> RosterDay:
    """A day's roster from its rows (ROSTER_SQL's)."""
    return RosterDay(day, {t: (s, e) for t, s, e in rows} if rows else None)


def load(cur, day: date) -> RosterDay:
    cur.execute(ROSTER_SQL, (day,))
    return day_of(day, cur.fetchall())


def city_day(at: datetime) -> date:
    return at.astimezone(CITY_TZ).date()


class RosterCache:
    """Today's roster, read again at most once a minute (and when the city's day changes)."""

    def __init__(self) -> None:
        self._day: RosterDay | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()

    def today(self, now: datetime, read: Callable[[date], RosterDay]) -> RosterDay:
        """`read(day)` when the cached day is old (e.g. `lambda day: load(cur, day)`)."""
        with self._lock:
            day = city_day(now)
            if self._day is None or self._day.day != day or clock.monotonic() - self._read_at > REFRESH_S:
                self._day = read(day)
                self._read_at = clock.monotonic()
            return self._day


def demo_rows(city: City, first: date, days: int) -> list[tuple[date, str, time, time, str]]:
    """The demo's roster: every member on duty all day, each handler of a grid resting one day a
    week (a different weekday for each in the grid); supervisors every day."""
    rows = []
    for n in range(days):
        day = first + timedelta(days=n)
        handlers: dict[str, int] = {}
        for member in city.members:
            if member.role is not Role.GRID_SUPERVISOR:
                k = handlers[member.grid_code] = handlers.get(member.grid_code, -1) + 1
                if (int(member.grid_code[-3:]) + 2 * k) % 7 == day.weekday():
                    continue                                   # their rest day
            rows.append((day, member.terminal_id, *ALL_DAY, "demo roster"))
    return rows

"""The duty roster: who is on duty on a day (city time), and when (`duty_roster`).

A day with no rows has no roster: everyone counts as on duty, and the screens say so. A day with
rows: a member with a row is on duty from `starts` to `ends` (city time), one without is off duty
that day. A deployment loads its own; the demo writes one (simulator/roster.py).

`RosterCache` reads a day once a minute at most, for the console's candidates and the cases
engine's picks alike.
"""
from __future__ import annotations

import threading
import time as clock
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time

from core.city import CITY_TZ

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

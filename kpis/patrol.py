"""Patrol coverage, maintained as fixes come (a thread of the cases engine, beside the rollups):
each pass takes the fixes stored with a time in [watermark, now − LATENESS), and folds each
member's into their day's row (kpis.tracks.extend): fixes, fixes in their home grid, the grid's H3
cells visited, distance walked, time in the grid. The rows and the watermark commit together.

Each grid-day first inspected and each member-day first active also counts, once, in
patrol_units_daily for the grid and every unit above it (the KPI page's inspection and active
rates). A fix that arrives later than LATENESS after its own time (a terminal that was offline and sends
its buffer) is stored as ever but not counted here; `python -m kpis.patrol --day YYYY-MM-DD` folds a
day again from all its stored fixes.
"""
from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone

import psycopg2
from psycopg2.extras import execute_values

from cases import listening
from core.city import CITY_TZ, City
from kpis.facts import city_day
from kpis.rollup import levels
from kpis.tracks import Fix, PatrolDay, extend, grid_cells

log = logging.getLogger(__name__)
LATENESS = timedelta(minutes=2)
FIRST_LOOK_BACK = timedelta(minutes=10)     # where a first pass starts, without a watermark
EVERY_S = 30.0
COLUMNS = ("day", "terminal_id", "grid_code", "fixes", "fixes_in_grid", "cells", "cells_total", "distance_m",
           "seconds_in_grid", "last_time", "last_lat", "last_lon", "last_in_grid")


class Patrols:
    def __init__(self, city: City) -> None:
        self.city = city
        self._cells: dict[str, set[str]] = {}

    def cells_of(self, grid_code: str) -> set[str]:
        if grid_code not in self._cells:
            self._cells[grid_code] = grid_cells(self.city.grid_by_code[grid_code].boundary)
        return self._cells[grid_code]

    def fold(self, cur, start: datetime, end: datetime) -> int:
        """Fold the fixes with a time in [start, end) into their days' rows; returns the fixes folded."""
        cur.execute("select terminal_id, time, lat, lon, grid_code from positions where time >= %s and time < %s "
                    "order by terminal_id, time", (start, end))
        by_day: dict[tuple[date, str], list[tuple]] = defaultdict(list)
        n = 0
        for terminal_id, t, lat, lon, grid_code in cur.fetchall():
            if terminal_id in self.city.member_by_terminal:
                by_day[(city_day(t), terminal_id)].append((Fix(t, lat, lon), grid_code))
                n += 1
        if not by_day:
            return 0
        keys = list(by_day)
        cur.execute(f"select {', '.join(COLUMNS)} from patrol_daily join unnest(%s::date[], %s::text[]) as k(d, t) "
                    "on day = k.d and terminal_id = k.t for update", ([k[0] for k in keys], [k[1] for k in keys]))
        stored = {(row[0], row[1]): row for row in cur.fetchall()}
        homes = {(day, self.city.member_by_terminal[t].grid_code) for day, t in keys}
        cur.execute("select distinct day, grid_code from patrol_daily join unnest(%s::date[], %s::text[]) as k(d, g) "
                    "on day = k.d and grid_code = k.g where fixes_in_grid > 0",
                    ([d for d, _ in homes], [g for _, g in homes]))
        inspected_before = {(d, g.strip()) for d, g in cur.fetchall()}
        newly_active: dict[tuple[date, str], int] = defaultdict(int)
        newly_inspected: set[tuple[date, str]] = set()
        rows = []
        for (day, terminal_id), fixes in by_day.items():
            home = self.city.member_by_terminal[terminal_id].grid_code
            cells = self.cells_of(home)
            before = _day(stored.get((day, terminal_id)))
            after = extend(before, [f for f, _ in fixes], [g == home for _, g in fixes], cells)
            if before.fixes == 0:
                newly_active[(day, home)] += 1
            if after.fixes_in_grid and (day, home) not in inspected_before:
                newly_inspected.add((day, home))
            rows.append((day, terminal_id, home, after.fixes, after.fixes_in_grid, sorted(after.cells), len(cells),
                         after.distance_m, after.seconds_in_grid, after.last.time, after.last.lat, after.last.lon,
                         after.last_in_grid))
        execute_values(cur, f"insert into patrol_daily ({', '.join(COLUMNS)}) values %s on conflict (day, terminal_id) "
                            "do update set " + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[2:]), rows,
                       page_size=1000)
        units: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
        for (day, grid), count in newly_active.items():
            for unit in levels(grid):
                units[(day, unit)][1] += count
        for day, grid in newly_inspected:
            for unit in levels(grid):
                units[(day, unit)][0] += 1
        if units:
            execute_values(cur, "insert into patrol_units_daily (day, org_code, grid_days_inspected, "
                                "member_days_active) values %s on conflict (day, org_code) do update set "
                                "grid_days_inspected = patrol_units_daily.grid_days_inspected + "
                                "excluded.grid_days_inspected, member_days_active = "
                                "patrol_units_daily.member_days_active + excluded.member_days_active",
                           [(d, u, i, a) for (d, u), (i, a) in units.items()], page_size=1000)
        return n

    def fold_pass(self, conn, now: datetime) -> int:
        """One transaction: the fixes since the watermark (up to now − LATENESS), and the watermark moved."""
        upto = now - LATENESS
        with conn, conn.cursor() as cur:
            cur.execute("select upto from patrol_watermark for update")
            row = cur.fetchone()
            start = row[0] if row else upto - FIRST_LOOK_BACK
            if upto <= start:
                return 0
            n = self.fold(cur, start, upto)
            cur.execute("insert into patrol_watermark (singleton, upto) values (true, %s) "
                        "on conflict (singleton) do update set upto = excluded.upto", (upto,))
            return n

    def refold_day(self, conn, day: date) -> int:
        """A day again from every fix stored for it."""
        start = datetime.combine(day, datetime.min.time(), CITY_TZ)
        with conn, conn.cursor() as cur:
            cur.execute("delete from patrol_daily where day = %s", (day,))
            cur.execute("delete from patrol_units_daily where day = %s", (day,))
            return self.fold(cur, start, start + timedelta(days=1))


def _day(row) -> PatrolDay:
    if row is None:
        return PatrolDay()
    (_, _, _, fixes, in_grid, cells, _, distance, seconds, last_time, last_lat, last_lon, last_in) = row
    return PatrolDay(fixes, in_grid, frozenset(cells or ()), distance, seconds,
                     Fix(last_time, last_lat, last_lon) if last_time else None, bool(last_in))


class PatrolMaintainer:
    def __init__(self, dsn: str, city: City, stop_event: threading.Event | None = None, every_s: float = EVERY_S):
        self.dsn, self.patrols = dsn, Patrols(city)
        self.stop_event = stop_event or threading.Event()
        self.every_s = every_s
        self.folded = 0

    def run(self) -> None:
        listening.keep_running(self._loop, self.stop_event, "the patrol coverage maintainer")

    def _loop(self) -> None:
        conn = psycopg2.connect(self.dsn, application_name="gcc-cases-patrol")
        try:
            while not self.stop_event.is_set():
                self.folded += self.patrols.fold_pass(conn, datetime.now(timezone.utc))
                self.stop_event.wait(self.every_s)
        finally:
            conn.close()


def main(argv: list[str] | None = None) -> int:
    from config.settings import load_settings
    from database.citydb import read_city

    parser = argparse.ArgumentParser(prog="python -m kpis.patrol", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--day", type=date.fromisoformat, action="append", required=True,
                        help="a day (city time) to fold again from its stored fixes; repeat for more")
    args = parser.parse_args(argv)
    conn = psycopg2.connect(load_settings().pg_dsn)
    try:
        patrols = Patrols(read_city(conn))
        for day in args.day:
            print(f"{day}: {patrols.refold_day(conn, day):,} fixes folded")
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

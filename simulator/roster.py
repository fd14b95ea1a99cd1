"""The demo's duty roster (`make demo` only; a deployment loads its own into `duty_roster`):
every member on duty around the clock, each grid member but the supervisor resting one day a
week, on a weekday that differs within the grid (dispatch.roster reads it as any roster)."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import psycopg2
from psycopg2.extras import execute_values

from core.city import City
from core.roles import Role
from dispatch.roster import ALL_DAY, city_day


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


def write(city: City, dsn: str, days: int = 8) -> int:
    """The demo's roster from yesterday on, where a day has none yet; how many rows were added."""
    first = city_day(datetime.now(timezone.utc)) - timedelta(days=1)
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("select distinct day from duty_roster where day >= %s", (first,))
            have = {d for (d,) in cur.fetchall()}
            rows = [r for r in demo_rows(city, first, days) if r[0] not in have]
            execute_values(cur, "insert into duty_roster (day, terminal_id, starts, ends, note) values %s "
                                "on conflict do nothing", rows, page_size=2000)
            return len(rows)
    finally:
        conn.close()

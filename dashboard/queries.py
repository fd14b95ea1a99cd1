"""Read-only data access for the screens: the city's reference data, live state from Redis (read
through the contract in telemetry.live), history from TimescaleDB. Callbacks, feeds and socket
handlers call these; they never query on their own, and nothing here writes (dashboard/commands.py
does)."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import h3
import psycopg2
import redis
from psycopg2.pool import ThreadedConnectionPool
from shapely.geometry import mapping

from dashboard.authz import Scope
from telemetry import live
from telemetry.city import CITY_TZ, City, Member
from telemetry.orgcodes import Level, contains

HEX_RESOLUTION = 9          # ~0.1 km² cells: a few per grid
WINDOWS = {"hour": timedelta(hours=1), "today": None}
_INDENT = {Level.DISTRICT: "", Level.STREET: "  ", Level.COMMUNITY: "    "}


class Queries:
    def __init__(self, city: City, redis_client: redis.Redis, dsn: str) -> None:
        self.city = city
        self.r = redis_client
        self.db = ThreadedConnectionPool(0, 4, dsn, connect_timeout=5)  # snapshots and heat maps, any thread
        self._grid_features = {g.code: {"type": "Feature", "geometry": mapping(g.boundary),
                                        "properties": {"id": g.code, "name": g.name, "kind": g.kind.value}}
                               for g in city.grids}

    # --- reference data -------------------------------------------------------------------------
    def org_options(self, root_code: str = "") -> list[dict]:
        """The org selector's choices: the identity's own unit and everything below it (down to
        communities), never above or beside it."""
        options = [{"label": f"{self.city.name} (all)", "value": ""}] if not root_code else []
        for unit in [*self.city.districts, *self.city.streets, *self.city.communities]:
            if contains(root_code, unit.code):
                options.append({"label": f"{_INDENT[unit.level]}{unit.name} · {unit.code}", "value": unit.code})
        if root_code in self.city.grid_by_code:
            options.append({"label": f"{self.city.org_name(root_code)} · {root_code}", "value": root_code})
        return options

    def bounds(self, scope: Scope) -> list[list[float]]:
        geoms = [g.boundary for g in self.city.grids if scope.covers(g.code)]
        minx = min(g.bounds[0] for g in geoms)
        miny = min(g.bounds[1] for g in geoms)
        maxx = max(g.bounds[2] for g in geoms)
        maxy = max(g.bounds[3] for g in geoms)
        return [[miny, minx], [maxy, maxx]]

    def grids_geojson(self, scope: Scope) -> dict:
        return {"type": "FeatureCollection",
                "features": [f for code, f in self._grid_features.items() if scope.covers(code)]}

    def grid_codes(self, scope: Scope) -> list[str]:
        return [g.code for g in self.city.grids if scope.covers(g.code)]

    def members(self, scope: Scope) -> list[Member]:
        return [m for m in self.city.members if scope.covers(m.grid_code)]

    def member(self, terminal_id: str) -> Member | None:
        return self.city.member_by_terminal.get(terminal_id)

    def building_name(self, building_id: str | None) -> str | None:
        building = self.city.building_by_id.get(building_id or "")
        if building is None:
            return building_id
        return f"{building.name}, {self.city.org_name(building.grid_code)}"

    def org_name(self, code: str | None) -> str | None:
        try:
            return self.city.org_name(code) if code else None
        except KeyError:
            return code

    # --- live state -------------------------------------------------------------------------------
    def members_live(self, members: list[Member]) -> list[live.TerminalLive]:
        """Live state of these members' terminals (those with a known position)."""
        return live.read_terminals(self.r, [m.terminal_id for m in members])

    def open_alarms(self, scope: Scope) -> list[live.AlarmChange]:
        """The open alarms of the scope, each with who acknowledged it (the database's record)."""
        alarms = [a for a in live.read_open_alarms(self.r) if scope.covers(a.grid_code)]
        if not alarms:
            return []
        acks = {(sensor_id, alarm_id): (actor, at.timestamp()) for sensor_id, alarm_id, actor, at in self._query(
            "select a.sensor_id, a.alarm_id, a.actor, a.acknowledged_at from alarm_acknowledgements a "
            "join unnest(%s::text[], %s::text[]) as o(sensor_id, alarm_id) using (sensor_id, alarm_id)",
            ([a.sensor_id for a in alarms], [a.alarm_id for a in alarms]))}
        return [replace(a, acknowledged_by=ack[0], acknowledged_at=ack[1])
                if (ack := acks.get((a.sensor_id, a.alarm_id))) else a for a in alarms]

    def recent_reports(self, scope: Scope) -> list[live.ReportChange]:
        return [r for r in live.read_recent_reports(self.r) if scope.covers(r.grid_code)]

    # --- history ------------------------------------------------------------------------------------
    def _query(self, sql: str, args: tuple) -> list[tuple]:
        conn = self.db.getconn()
        broken = False
        try:
            with conn, conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall()
        except psycopg2.OperationalError:
            broken = True  # e.g. the server restarted: drop this connection, the next query opens anew
            raise
        finally:
            self.db.putconn(conn, close=broken or conn.closed)

    def closures_today(self, scope: Scope) -> int:
        rows = self._query("select count(*) from incident_events where event = 'closed' and time >= %s "
                           "and coalesce(org_code, '') like %s", (start_of_local_day(), scope.code + "%"))
        return rows[0][0]

    def heat_all(self, scope: Scope) -> dict:
        """H3 hexbins of incident reports and raised device alarms, for every window (one query)."""
        now = datetime.now(timezone.utc)
        since = {window: now - delta if delta else start_of_local_day() for window, delta in WINDOWS.items()}
        rows = self._query(
            "select lat, lon, time from incident_reports where time >= %s and grid_code like %s "
            "union all select s.lat, s.lon, a.time from device_alarms a join sensors s using (sensor_id) "
            "where a.time >= %s and a.state = 'raised' and a.grid_code like %s",
            (min(since.values()), scope.code + "%", min(since.values()), scope.code + "%"))
        located = [(h3.latlng_to_cell(lat, lon, HEX_RESOLUTION), t) for lat, lon, t in rows if lat is not None]
        return {window: _hexbins(Counter(cell for cell, t in located if t >= start), window)
                for window, start in since.items()}


def _hexbins(cells: Counter, window: str) -> dict:
    features = []
    for cell, n in cells.items():
        ring = [[lng, lat] for lat, lng in h3.cell_to_boundary(cell)]
        features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring + ring[:1]]},
                         "properties": {"id": cell, "count": n}})
    return {"type": "FeatureCollection", "features": features,
            "properties": {"max": max(cells.values(), default=0), "window": window}}


def start_of_local_day(now: float | None = None) -> datetime:
    local = datetime.fromtimestamp(now if now is not None else time.time(), CITY_TZ)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)

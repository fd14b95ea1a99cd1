"""Data access for the screens: the city's reference data, live state from Redis, history from
TimescaleDB. Callbacks and socket handlers call these; they never query on their own."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import h3
import orjson
import psycopg2
import redis
from psycopg2.pool import ThreadedConnectionPool
from shapely.geometry import mapping

from ingest.live import SILENT_AFTER_S
from telemetry.catalogue import INCIDENT_CATEGORIES
from telemetry.city import CITY_TZ, City, Member
from telemetry.orgcodes import contains

HEX_RESOLUTION = 9          # ~0.1 km² cells: a few per grid
WINDOWS = {"hour": timedelta(hours=1), "today": None}


@dataclass
class Scope:
    code: str               # "" is the whole city
    name: str

    def covers(self, grid_code: str | None) -> bool:
        return not self.code or (grid_code is not None and contains(self.code, grid_code))

    @property
    def room(self) -> str:
        return f"org:{self.code}" if self.code else "org:city"


class Queries:
    def __init__(self, city: City, redis_client: redis.Redis, dsn: str) -> None:
        self.city = city
        self.r = redis_client
        self.db = ThreadedConnectionPool(0, 4, dsn, connect_timeout=5)  # snapshots and heat maps, any thread
        self._grid_features = {g.code: {"type": "Feature", "geometry": mapping(g.boundary),
                                        "properties": {"id": g.code, "name": g.name, "kind": g.kind.value}}
                               for g in city.grids}

    # --- scopes ---------------------------------------------------------------------------------
    def scope(self, code: str | None) -> Scope | None:
        """A scope the screens may show, or None if the code is not an org unit of this city."""
        if not code:
            return Scope("", self.city.name)
        if code in self.city.org_by_code:
            return Scope(code, self.city.org_by_code[code].name)
        return None

    def org_options(self) -> list[dict]:
        options = [{"label": f"{self.city.name} (all)", "value": ""}]
        for unit in [*self.city.districts, *self.city.streets, *self.city.communities]:
            indent = {"district": "", "street": "  ", "community": "    "}[unit.level.value]
            options.append({"label": f"{indent}{unit.name} · {unit.code}", "value": unit.code})
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

    # --- live state -------------------------------------------------------------------------------
    def members_live(self, members: list[Member]) -> list[dict]:
        """Live state of these members (those with a known position)."""
        pipe = self.r.pipeline(transaction=False)
        for m in members:
            pipe.hgetall(f"gcc:term:{m.terminal_id}")
        out = []
        now = time.time()
        for member, state in zip(members, pipe.execute()):
            if not state or b"lon" not in state:
                continue
            s = {k.decode(): v.decode() for k, v in state.items()}
            status = s.get("state", "unknown")
            if status == "online" and now - float(s.get("seen", now)) > SILENT_AFTER_S:
                status = "unknown"
            out.append({"terminal_id": member.terminal_id, "member": member.member_id, "name": member.name,
                        "role": member.role.value, "grid": member.grid_code, "lon": float(s["lon"]),
                        "lat": float(s["lat"]), "state": status, "battery": _int(s.get("battery")),
                        "t": float(s.get("t", 0)), "stateT": float(s.get("state_t") or 0)})
        return out

    def open_alarms(self, scope: Scope) -> list[dict]:
        alarms = [orjson.loads(v) for v in self.r.hvals("gcc:alarms:open")]
        out = []
        for a in alarms:
            if scope.covers(a.get("grid")):
                sensor = self.city.sensor_by_id.get(a["sensor_id"])
                if sensor is not None:
                    a["lon"], a["lat"] = sensor.lon, sensor.lat
                out.append(a)
        return out

    def recent_reports(self, scope: Scope, since_s: float = 86400) -> list[dict]:
        ids = self.r.zrangebyscore("gcc:reports", time.time() - since_s, "+inf")
        if not ids:
            return []
        values = self.r.mget([f"gcc:report:{i.decode()}" for i in ids])
        return [r | {"label": category_label(r.get("category", ""))}
                for r in (orjson.loads(v) for v in values if v) if scope.covers(r.get("grid"))]

    def snapshot(self, scope: Scope) -> dict:
        """Everything a screen needs to (re)draw its scope from scratch."""
        in_scope = [m for m in self.city.members if scope.covers(m.grid_code)]
        members = self.members_live(in_scope)
        placed = {m["terminal_id"] for m in members}
        return {"scope": scope.code, "scope_name": scope.name, "members": members,
                "roster": [[m.terminal_id, m.name, m.role.value, m.grid_code] for m in in_scope
                           if m.terminal_id not in placed],
                "grids": [g.code for g in self.city.grids if scope.covers(g.code)],
                "alarms": self.open_alarms(scope), "reports": self.recent_reports(scope),
                "member_total": len(in_scope),
                "closures_today": self.closures_today(scope), "heat": self.heat_all(scope), "t": time.time()}

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
        start = _start_of_local_day()
        rows = self._query("select count(*) from incident_events where event = 'closed' and time >= %s "
                           "and coalesce(org_code, '') like %s", (start, scope.code + "%"))
        return rows[0][0]

    def heat_all(self, scope: Scope) -> dict:
        """H3 hexbins of incident reports and raised device alarms, for every window (one query)."""
        now = datetime.now(timezone.utc)
        since = {window: now - delta if delta else _start_of_local_day() for window, delta in WINDOWS.items()}
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


def category_label(code: str) -> str:
    category = INCIDENT_CATEGORIES.get(code)
    return f"{category.name_en} {category.name_zh}" if category else code.replace("_", " ")


def _int(value):
    return int(value) if value not in (None, "") else None


def _start_of_local_day() -> datetime:
    local = datetime.now(CITY_TZ)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)

"""Read-only data access for the screens, put together from the domains' reads (registry.reads,
cases.reads, dispatch.reads, kpis.reads, database.audit_reads, on database.reads' pool) with what
only the screens ask: the city's reference data as the pages draw it, live state from Redis (read
through the contract in telemetry.live) and the wall's heat map and closures. Callbacks, feeds and
socket handlers call these; they never query on their own, and nothing here writes
(dashboard/commands.py does)."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import h3
import redis
from shapely.geometry import mapping

from cases.reads import CASE_SORTS, CASE_STATUSES, CaseFilter, CaseReads
from core.city import CITY_TZ, City, Member
from core.orgcodes import Level, Scope, contains
from database.audit_reads import AuditFilter, AuditReads
from dispatch.reads import DispatchReads
from kpis.reads import KpiReads, period_bounds
from registry.reads import RegistryReads
from telemetry import live

__all__ = ["CASE_SORTS", "CASE_STATUSES", "AuditFilter", "CaseFilter", "Queries", "period_bounds",
           "start_of_local_day"]

HEX_RESOLUTION = 9          # ~0.1 km² cells: a few per grid
WINDOWS = {"hour": timedelta(hours=1), "today": None}
_INDENT = {Level.DISTRICT: "", Level.STREET: "  ", Level.COMMUNITY: "    "}


class Queries(RegistryReads, CaseReads, DispatchReads, KpiReads, AuditReads):
    def __init__(self, city: City, redis_client: redis.Redis, dsn: str, case_time_scale: float = 1.0,
                 automatic: frozenset[str] = frozenset()) -> None:
        super().__init__(city, dsn)
        self.case_time_scale = case_time_scale      # the cases engine's (a demo's shortened limits)
        self.automatic = automatic                  # the categories the cases engine dispatches itself
        self.r = redis_client
        self._grid_features: tuple[list, dict] = ([], {})   # (the grids they were made of, the features)

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
        """The scope's grid outlines; made again once a boundary import has changed the city's grids
        (the registry's watch swaps in a new list)."""
        grids, features = self._grid_features
        if grids is not self.city.grids:
            grids = self.city.grids
            features = {g.code: {"type": "Feature", "geometry": mapping(g.boundary),
                                 "properties": {"id": g.code, "name": g.name, "kind": g.kind.value}} for g in grids}
            self._grid_features = (grids, features)
        return {"type": "FeatureCollection", "features": [f for code, f in features.items() if scope.covers(code)]}

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

    def members_latest(self, members: list[Member]) -> list[live.TerminalLive]:
        """Each member once, at their latest live position from any of their devices (their own
        terminal, their phones), with their own terminal's state, battery and SOS where it has any
        (the device tasks and SOS go through; a silent phone does not make the member silent)."""
        wanted = {m.member_id for m in members}
        devices = [m.terminal_id for m in members] + [d.device_id for d in self.city.devices if d.member_id in wanted]
        latest: dict[str, live.TerminalLive] = {}
        own: dict[str, live.TerminalLive] = {}
        for state in live.read_terminals(self.r, devices):
            member = self.city.member_by_terminal.get(state.terminal_id)
            key = member.member_id if member else state.terminal_id
            if member is not None and member.terminal_id == state.terminal_id:
                own[key] = state
            if key not in latest or state.t > latest[key].t:
                latest[key] = state
        return [replace(own[key], lon=state.lon, lat=state.lat, t=state.t, grid_code=state.grid_code)
                if key in own and own[key] is not state else state for key, state in latest.items()]

    def own_terminal(self, device_id: str) -> str:
        """A member's own terminal id for any of their devices (what screens key a member by)."""
        member = self.city.member_by_terminal.get(device_id)
        return member.terminal_id if member else device_id

    def open_alarms(self, scope: Scope) -> list[live.AlarmChange]:
        """The open alarms of the scope, each with who acknowledged it (the database's record)."""
        alarms = [a for a in live.read_open_alarms(self.r) if scope.covers(a.grid_code)]
        if not alarms:
            return []
        acks = {(sensor_id, alarm_id): (actor, at.timestamp()) for sensor_id, alarm_id, actor, at in self.rows(
            "select a.sensor_id, a.alarm_id, a.actor, a.acknowledged_at from alarm_acknowledgements a "
            "join unnest(%s::text[], %s::text[]) as o(sensor_id, alarm_id) using (sensor_id, alarm_id)",
            ([a.sensor_id for a in alarms], [a.alarm_id for a in alarms]))}
        return [replace(a, acknowledged_by=ack[0], acknowledged_at=ack[1])
                if (ack := acks.get((a.sensor_id, a.alarm_id))) else a for a in alarms]

    def recent_reports(self, scope: Scope) -> list[live.ReportChange]:
        return [r for r in live.read_recent_reports(self.r) if scope.covers(r.grid_code)]

    # --- the wall's history -------------------------------------------------------------------------
    def closures_today(self, scope: Scope) -> int:
        rows = self.rows("select count(*) from case_events e join cases c using (case_id) where e.command = 'close' "
                           "and e.time >= %s and org_contains(%s, c.org_code)", (start_of_local_day(), scope.code))
        return rows[0][0]

    def heat_all(self, scope: Scope) -> dict:
        """H3 hexbins of incident reports and raised device alarms, for every window (one query)."""
        now = datetime.now(timezone.utc)
        since = {window: now - delta if delta else start_of_local_day() for window, delta in WINDOWS.items()}
        rows = self.rows(
            "select lat, lon, time from incident_reports where time >= %s and org_contains(%s, grid_code) "
            "union all select s.lat, s.lon, a.time from device_alarms a join sensors s using (sensor_id) "
            "where a.time >= %s and a.state = 'raised' and org_contains(%s, a.grid_code)",
            (min(since.values()), scope.code, min(since.values()), scope.code))
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


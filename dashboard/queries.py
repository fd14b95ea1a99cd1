"""Read-only data access for the screens: the city's reference data, live state from Redis (read
through the contract in telemetry.live), history from TimescaleDB. Callbacks, feeds and socket
handlers call these; they never query on their own, and nothing here writes (dashboard/commands.py
does)."""
from __future__ import annotations

import secrets
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from typing import ClassVar

import h3
import psycopg2
import redis
from psycopg2.pool import ThreadedConnectionPool
from shapely.geometry import mapping

from cases import store as case_store
from cases.intake import MAX_ATTEMPTS
from cases.model import FINISHED, Case, State, values
from cases.tell import case_change
from core import freetext
from core.city import CITY_TZ, City, Member
from core.orgcodes import Level, contains
from dashboard.authz import Scope
from database import binary_copy
from dispatch import roster
from dispatch.candidates import OPEN_WORK
from dispatch.roster import RosterCache, RosterDay
from kpis import report as kpi_report
from kpis.report import Period, Report
from kpis.tracks import Track
from telemetry import live


def _name(column: str) -> str:
    """A name column as the registry's pages list it: at most a name's length (one stored before
    the limit would make a list of hundreds unusable in the browser), as read_city cuts it."""
    n = freetext.NAME.max_length
    return f"(case when length({column}) > {n} then left({column}, {n - 1}) || '…' else {column} end)"


HEX_RESOLUTION = 9          # ~0.1 km² cells: a few per grid
WINDOWS = {"hour": timedelta(hours=1), "today": None}
_INDENT = {Level.DISTRICT: "", Level.STREET: "  ", Level.COMMUNITY: "    "}


class Queries:
    def __init__(self, city: City, redis_client: redis.Redis, dsn: str, case_time_scale: float = 1.0,
                 automatic: frozenset[str] = frozenset()) -> None:
        self.city = city
        self.case_time_scale = case_time_scale      # the cases engine's (a demo's shortened limits)
        self._roster = RosterCache()
        self.automatic = automatic                  # the categories the cases engine dispatches itself
        self.r = redis_client
        self.db = ThreadedConnectionPool(0, 4, dsn, connect_timeout=5)  # snapshots and heat maps, any thread
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

    def member_devices(self, scope: Scope) -> list[tuple]:
        """The scope's members' active devices beyond their own terminals (the phones added), newest
        first: (device, kind, label, added, member, name, grid)."""
        return self.rows(f"select d.device_id, d.kind, {_name('d.label')}, d.added_at, m.member_id, "
                         f"{_name('m.name')}, m.grid_code "
                         "from member_devices d join members m using (member_id) "
                         "where d.retired_at is null and m.retired_at is null and org_contains(%s, m.grid_code) "
                         "and d.device_id <> m.terminal_id order by d.added_at desc, d.device_id limit 200",
                         (scope.code,))

    def device_grid(self, device_id: str) -> str | None:
        """The grid of an active device's member (what an admin's scope is checked against)."""
        rows = self.rows("select m.grid_code from member_devices d join members m using (member_id) "
                         "where d.device_id = %s and d.retired_at is null", (device_id,))
        return rows[0][0] if rows else None

    def new_device_id(self, member_id: str, kind: str) -> str:
        """A fresh id for a member's new phone: readable, never used before (ids are never reused)."""
        prefix = {"owntracks": "ot", "osmand": "tc"}.get(kind, "dev")
        for n in range(1, 100):
            candidate = f"{prefix}-{member_id}-{n}"
            if not self.rows("select 1 from member_devices where device_id = %s", (candidate,)):
                return candidate
        return f"{prefix}-{member_id}-{secrets.token_hex(3)}"

    # --- the registry's pages: the database's record (a change shows at once, before the watch) ---
    @staticmethod
    def _like(search: str) -> str:
        return "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"

    def registry_members(self, scope: Scope, search: str, limit: int) -> tuple[list[tuple], int]:
        """The scope's active members matching `search` (id, name, terminal, grid code or name), by
        grid: ([(member, name, role, grid, terminal, phones)], how many match)."""
        rows = self.rows(f"""
            select m.member_id, {_name("m.name")}, m.role, m.grid_code, m.terminal_id,
                   (select count(*) from member_devices d where d.member_id = m.member_id
                       and d.retired_at is null and d.device_id <> m.terminal_id),
                   count(*) over ()
              from members m join grids g on g.code = m.grid_code
             where m.retired_at is null and org_contains(%s, m.grid_code)
               and (%s = '' or m.member_id ilike %s or m.name ilike %s or m.terminal_id ilike %s
                    or m.grid_code like %s or g.name ilike %s)
             order by m.grid_code, m.member_id limit %s""",
                         (scope.code, search, *[self._like(search)] * 5, limit))
        return [r[:6] for r in rows], (rows[0][6] if rows else 0)

    def registry_member(self, member_id: str) -> tuple | None:
        """An active member: (member, name, role, grid, terminal, [their other active devices])."""
        rows = self.rows(f"""
            select m.member_id, {_name("m.name")}, m.role, m.grid_code, m.terminal_id,
                   array(select d.device_id from member_devices d where d.member_id = m.member_id
                         and d.retired_at is null and d.device_id <> m.terminal_id order by d.device_id)
              from members m where m.member_id = %s and m.retired_at is null""", (member_id,))
        return rows[0] if rows else None

    def registry_gateways(self, scope: Scope, search: str, limit: int) -> tuple[list[tuple], int]:
        """The scope's active gateways matching `search` (id, building id or name, grid code):
        ([(gateway, kind, protocol, building, building name, grid, active sensors)], how many)."""
        rows = self.rows(f"""
            select w.gateway_id, w.kind, w.protocol, w.building_id, {_name("b.name")}, w.grid_code,
                   (select count(*) from sensors s where s.gateway_id = w.gateway_id and s.retired_at is null),
                   count(*) over ()
              from gateways w join buildings b using (building_id)
             where w.retired_at is null and org_contains(%s, w.grid_code)
               and (%s = '' or w.gateway_id ilike %s or w.building_id ilike %s or b.name ilike %s
                    or w.grid_code like %s)
             order by w.grid_code, w.gateway_id limit %s""",
                         (scope.code, search, *[self._like(search)] * 4, limit))
        return [r[:7] for r in rows], (rows[0][7] if rows else 0)

    def registry_sensors(self, gateway_id: str) -> list[tuple]:
        """A gateway's active sensors: (sensor, kind, building, building name, grid)."""
        return self.rows(f"select s.sensor_id, s.kind, s.building_id, {_name('b.name')}, s.grid_code from sensors s "
                         "join buildings b using (building_id) where s.gateway_id = %s and s.retired_at is null "
                         "order by s.sensor_id", (gateway_id,))

    def registry_grid(self, what: str, key: str) -> str | None:
        """The grid of an active gateway, sensor or building (what an admin's scope is checked against)."""
        table, column, active = {"gateway": ("gateways", "gateway_id", "retired_at is null"),
                                 "sensor": ("sensors", "sensor_id", "retired_at is null"),
                                 "building": ("buildings", "building_id", "true")}[what]
        rows = self.rows(f"select grid_code from {table} where {column} = %s and {active}", (key,))
        return rows[0][0] if rows else None

    def buildings_matching(self, scope: Scope, search: str, limit: int = 50) -> list[tuple]:
        """Buildings of the scope whose id or name matches: (building, name, grid)."""
        return self.rows(f"select building_id, {_name('name')}, grid_code from buildings "
                         "where org_contains(%s, grid_code) and (building_id ilike %s or name ilike %s) "
                         "order by grid_code, building_id limit %s",
                         (scope.code, self._like(search), self._like(search), limit))

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

    # --- history ------------------------------------------------------------------------------------
    @contextmanager
    def _cursor(self, name: str | None = None):
        """A cursor in a transaction on a connection of the dashboard's pool."""
        conn = self.db.getconn()
        broken = False
        try:
            with conn, conn.cursor(name=name) as cur:
                yield cur
        except psycopg2.OperationalError:
            broken = True  # e.g. the server restarted: drop this connection, the next query opens anew
            raise
        finally:
            self.db.putconn(conn, close=broken or conn.closed)

    def rows(self, sql: str, args: tuple) -> list[tuple]:
        """A query's rows, on a connection of the dashboard's pool."""
        with self._cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    def open_cases(self, scope: Scope, limit: int = 500) -> list[live.CaseChange]:
        """The open cases of the scope, as the bus carries them: SOS first, then urgent, then the
        nearest deadline (overdue first)."""
        rows = self.rows(f"select {', '.join(case_store.CASE_COLUMNS)} from cases "
                           "where state <> all(%s) and org_contains(%s, org_code) "
                           "order by source = 'sos' desc, urgency = 'urgent' desc, deadline nulls last limit %s",
                           (values(FINISHED), scope.code, limit))
        return [case_change(case_store.from_row(row), self.city) for row in rows]

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


    # --- the audit trail (leaders and admins; dashboard/pages/audit.py) ------------------------------
    AUDIT_COLUMNS = ("time", "actor", "roles", "action", "target", "scope_code", "outcome", "reason", "before",
                     "after", "source_address")

    def audit(self, scope: Scope, wanted: AuditFilter, limit: int) -> tuple[list[dict], int]:
        """The newest `limit` rows of the audit trail that match, within the scope, and how many
        match in all. A row belongs to the org unit of its target (or of the person, for logins);
        rows of no org unit (a failed login of an unknown name) only at the city's scope."""
        where, args = _audit_where(scope, wanted)
        rows = self.rows(f"select {', '.join(self.AUDIT_COLUMNS)} from audit_log where {where} "
                           "order by time desc, id desc limit %s", (*args, limit))
        total = self.rows(f"select count(*) from audit_log where {where}", args)[0][0]
        return [dict(zip(self.AUDIT_COLUMNS, row, strict=True)) for row in rows], total

    def audit_export(self, scope: Scope, wanted: AuditFilter):
        """Every matching row, oldest first (streamed: an export of a year is not held in memory)."""
        where, args = _audit_where(scope, wanted)
        yield from self._stream(f"select {', '.join(self.AUDIT_COLUMNS)} from audit_log where {where} "
                                "order by time, id", args, self.AUDIT_COLUMNS)

    def _stream(self, query: str, args: tuple, columns, batch: int = 2000):
        """The rows of a query as dicts, read in batches through a server-side cursor."""
        with self._cursor(name="export") as cur:
            cur.itersize = batch
            cur.execute(query, args)
            for row in cur:
                yield dict(zip(columns, row, strict=True))

    # --- the assessment (leaders; dashboard/pages/kpis.py) ----------------------------------------
    def kpi_report(self, scope: Scope, period: Period) -> Report:
        """The scope's indicators for the period and the one before, per child unit, category and day."""
        return kpi_report.read(self.rows, scope.code, period, self.city)

    def field_indicators(self, scope: Scope, period: Period) -> dict:
        """Devices and announcements in the period: alarms raised, per 1,000 devices of the scope, the
        mean time to acknowledge one; announcements' recipients and how many of them read it."""
        start, end = period_bounds(period)
        raised, acked, ack_s = self.rows(
            "select count(*), count(k.alarm_id), avg(extract(epoch from k.acknowledged_at - a.time)) "
            "from device_alarms a left join alarm_acknowledgements k on k.alarm_id = a.alarm_id "
            "and k.sensor_id = a.sensor_id where a.state = 'raised' and a.time >= %s and a.time < %s "
            "and org_contains(%s, a.grid_code)", (start, end, scope.code))[0]
        recipients, read = self.rows(
            "select (select coalesce(sum(recipients), 0) from announcements where created_at >= %s and created_at < %s "
            "and org_contains(%s, org_code)), (select count(distinct (r.announcement_id, r.terminal_id)) "
            "from announcement_reads r join announcement_recipients p using (announcement_id, terminal_id) "
            "join announcements a on a.id = r.announcement_id where a.created_at >= %s and a.created_at < %s "
            "and org_contains(%s, a.org_code))",
            (start, end, scope.code, start, end, scope.code))[0]
        devices = sum(1 for s in self.city.sensors if scope.covers(s.grid_code))
        return {"alarms": raised, "devices": devices, "acknowledged": acked,
                "ack_s": float(ack_s) if ack_s is not None else None, "recipients": int(recipients), "read": read}

    def diary(self, scope: Scope, period: Period, limit: int = 30) -> list[tuple]:
        """The newest diary entries of the scope in the period: (time, terminal, entry, category, text, rating)."""
        start, end = period_bounds(period)
        return self.rows("select e.time, e.terminal_id, e.entry_id, e.category, e.text, r.rating from diary_entries e "
                         "left join diary_ratings r using (terminal_id, entry_id) where e.time >= %s and e.time < %s "
                         "and org_contains(%s, e.grid_code) order by e.time desc limit %s",
                         (start, end, scope.code, limit))

    def overdue_now(self, scope: Scope, limit: int = 50) -> tuple[list[Case], int]:
        """The open cases of the scope past their stage's deadline, the longest overdue first, and how many."""
        now = datetime.now(timezone.utc)
        where = "deadline < %s and state <> all(%s) and org_contains(%s, org_code)"
        args = (now, values(FINISHED), scope.code)
        rows = self.rows(f"{_CASES} where {where} order by deadline limit %s", (*args, limit))
        return [case_store.from_row(row) for row in rows], self.rows(f"select count(*) from cases where {where}",
                                                                     args)[0][0]

    def reworked(self, scope: Scope, period: Period, limit: int = 50) -> list[tuple[Case, int, datetime]]:
        """The cases of the scope whose work failed verification in the period: each with how many
        times, and the latest; the latest first."""
        start, end = period_bounds(period)
        found = self.rows("select e.case_id, count(*), max(e.time) from case_events e join cases c using (case_id) "
                          "where e.command = 'verify' and e.to_state = %s and e.time >= %s and e.time < %s "
                          "and org_contains(%s, c.org_code) group by e.case_id order by max(e.time) desc limit %s",
                          (State.HANDLING.value, start, end, scope.code, limit))
        if not found:
            return []
        cases = {row[0]: case_store.from_row(row) for row in self.rows(f"{_CASES} where case_id = any(%s)",
                                                                      ([f[0] for f in found],))}
        return [(cases[case_id], n, last) for case_id, n, last in found if case_id in cases]

    # --- tracks (the replay: dashboard/pages/replay.py) -------------------------------------------
    def track(self, terminal_id: str, start: datetime, end: datetime) -> Track:
        """A terminal's stored fixes from start to end, in time order (the positions' key index),
        read as columns (database.binary_copy: a full day is 17,280 rows)."""
        with self._cursor() as cur:
            return Track(*binary_copy.read(
                cur, "select time, lat, lon from positions where terminal_id = %s and time >= %s and time < %s "
                     "order by time", (terminal_id, start, end), ("timestamptz", "float8", "float8")))

    def track_events(self, terminal_id: str, start: datetime, end: datetime) -> list[tuple[datetime, str, str, str]]:
        """What the member did meanwhile: (time, kind, case or report id, what) of its case work and reports."""
        return self.rows(
            "select time, 'case', case_id, command from case_events where actor_kind = 'terminal' and actor = %s "
            "and time >= %s and time < %s union all select time, 'report', report_id, category from incident_reports "
            "where terminal_id = %s and time >= %s and time < %s order by 1 limit 500",
            (terminal_id, start, end, terminal_id, start, end))

    def whereabouts_at(self, terminals: list[str], at: datetime, window: timedelta) -> dict[str, tuple]:
        """Where each terminal was at `at`: its last fix in the window before (terminal -> (time, lat, lon))."""
        rows = self.rows("select t.id, p.time, p.lat, p.lon from unnest(%s::text[]) as t(id) cross join lateral "
                         "(select time, lat, lon from positions where terminal_id = t.id and time <= %s and time > %s "
                         "order by time desc limit 1) p", (terminals, at, at - window))
        return {terminal: (t, lat, lon) for terminal, t, lat, lon in rows}

    # --- cases ----------------------------------------------------------------------------------
    def cases(self, scope: Scope, wanted: CaseFilter, limit: int) -> tuple[list[Case], int]:
        """The cases of the scope that match, in the order asked for, and how many match in all."""
        where, args = _case_where(scope, wanted)
        rows = self.rows(f"{_CASES} where {where} order by {wanted.order_by} limit %s", (*args, limit))
        total = self.rows(f"select count(*) from cases where {where}", args)[0][0]
        return [case_store.from_row(row) for row in rows], total

    def cases_export(self, scope: Scope, wanted: CaseFilter):
        where, args = _case_where(scope, wanted)
        for row in self._stream(f"{_CASES} where {where} order by {wanted.order_by}", args, case_store.CASE_COLUMNS):
            yield case_store.from_row(tuple(row.values()))

    def case_history(self, case_id: str) -> dict:
        """A case's events (oldest first), escalation steps, sources (the reports and alarms it was
        made of, with their photos) and the notices sent to terminals about it."""
        events = self.rows("select time, command, actor_kind, actor, roles, from_state, to_state, reason, detail "
                             "from case_events where case_id = %s order by id", (case_id,))
        steps = self.rows("select stage, level, org_code, step, repeat, due_at, fired_at from case_escalations "
                            "where case_id = %s order by fired_at, step, repeat", (case_id,))
        sources = self.rows(
            "select s.kind, s.key, s.linked, r.time, r.description, r.photo_ref, r.address from case_sources s "
            "left join incident_reports r on s.kind = 'report' and r.terminal_id = split_part(s.key, '/', 1) "
            "and r.report_id = substr(s.key, length(split_part(s.key, '/', 1)) + 2) where s.case_id = %s "
            "order by s.time", (case_id,))
        notices = self.rows("select terminal_id, kind, time, sent_at from case_notices where case_id = %s "
                              "order by id", (case_id,))
        names = ("time", "command", "actor_kind", "actor", "roles", "from_state", "to_state", "reason", "detail")
        return {"events": [dict(zip(names, e, strict=True)) for e in events],
                "escalations": [dict(zip(("stage", "level", "org_code", "step", "repeat", "due_at", "fired_at"), r,
                                         strict=True)) for r in steps],
                "sources": [dict(zip(("kind", "key", "linked", "time", "description", "photo_ref", "address"), r,
                                     strict=True)) for r in sources],
                "notices": [dict(zip(("terminal_id", "kind", "time", "sent_at"), r, strict=True)) for r in notices]}


    def roster_today(self, now: datetime | None = None) -> RosterDay:
        """Today's duty roster (dispatch.roster), read again once a minute at most."""
        return self._roster.today(now or datetime.now(timezone.utc),
                                  lambda day: roster.day_of(day, self.rows(roster.ROSTER_SQL, (day,))))

    def open_work(self) -> dict[str, list[str]]:
        """Every terminal's open case work (dispatch.candidates.OPEN_WORK): the states of its cases."""
        return dict(self.rows(OPEN_WORK, ()))

    # --- the rules (the rules page) -----------------------------------------------------------------
    def limit_versions(self) -> list[dict]:
        rows = self.rows("select version, min(created_at), min(created_by), count(*) from time_limits "
                           "group by version order by version desc", ())
        return [dict(zip(("version", "created_at", "created_by", "rows"), r, strict=True)) for r in rows]

    def limit_rows(self, version: int) -> list[tuple[str, str, str, float, str]]:
        """(category, stage, urgency, amount, unit) of one version."""
        return self.rows("select category, stage, urgency, amount, unit from time_limits where version = %s",
                           (version,))

    def calendar_sources(self, years: list[int]) -> dict[int, dict[str, int]]:
        rows = self.rows("select extract(year from day)::int, source, count(*) from work_calendar "
                           "where extract(year from day)::int = any(%s) group by 1, 2", (years,))
        out: dict[int, dict[str, int]] = {y: {} for y in years}
        for year, source, n in rows:
            out[year][source] = n
        return out

    def calendar_exceptions(self, first: date, last: date) -> list[dict]:
        """The days that are not what the weekday says (holidays on weekdays, make-up working
        weekends) and every admin override, in the period."""
        rows = self.rows("select day, workday, name, source, updated_by, updated_at from work_calendar "
                           "where day between %s and %s and (source = 'admin' or workday <> "
                           "(extract(isodow from day) < 6)) order by day", (first, last))
        return [dict(zip(("day", "workday", "name", "source", "updated_by", "updated_at"), r, strict=True))
                for r in rows]

    def held_inbox(self, limit: int = 100) -> list[dict]:
        """The cases engine's inbox rows it gave up on (cases.intake.MAX_ATTEMPTS), kept as evidence."""
        rows = self.rows("select id, kind, key, time, attempts, last_error from case_inbox where attempts >= %s "
                           "order by id desc limit %s", (MAX_ATTEMPTS, limit))
        return [dict(zip(("id", "kind", "key", "time", "attempts", "last_error"), r, strict=True)) for r in rows]


_CASES = f"select {', '.join(case_store.CASE_COLUMNS)} from cases"
CASE_STATUSES = ("open", "overdue", "escalated", "unacknowledged", "finished", "all")   # or one state's value
CASE_SORTS = {
    "deadline": "deadline nulls last, opened_at",
    "urgency": "source = 'sos' desc, urgency = 'urgent' desc, deadline nulls last",
    "opened": "opened_at desc",
    "escalation": "array_position(array['district', 'street', 'community', 'grid'], escalation_level) nulls last, "
                  "deadline nulls last",
    "state": "state, deadline nulls last",
    "category": "category, deadline nulls last",
}


@dataclass(frozen=True)
class CaseFilter:
    """What of the cases a dispatcher or leader asks for: open ones (or overdue, escalated, …, or
    those finished in the period), of a category and a source, matching a text, sorted."""
    status: str = "open"
    category: str | None = None
    source: str | None = None
    text: str | None = None        # a case number, or part of its title or place
    sort: str = "deadline"
    days: int = 30                 # finished / all: opened in the last `days` days

    MAX_DAYS: ClassVar[int] = 400

    @classmethod
    def from_params(cls, params: dict) -> CaseFilter:
        """From the page's controls or an export's query string; ValueError says what is wrong."""
        states = {s.value for s in State}
        status = params.get("status") or "open"
        if status not in CASE_STATUSES and status not in states:
            raise ValueError(f"{status!r} is not a status ({', '.join(CASE_STATUSES)}, or a state)")
        sort = params.get("sort") or "deadline"
        if sort not in CASE_SORTS:
            raise ValueError(f"{sort!r} is not a sort order ({', '.join(CASE_SORTS)})")
        try:
            days = int(params.get("days") or 30)
        except ValueError:
            raise ValueError(f"{params.get('days')!r} is not a number of days") from None
        if not 1 <= days <= cls.MAX_DAYS:
            raise ValueError(f"a period has 1 to {cls.MAX_DAYS} days")
        text = (params.get("text") or "").strip()[:64] or None
        return cls(status, params.get("category") or None, params.get("source") or None, text, sort, days)

    @property
    def order_by(self) -> str:
        return CASE_SORTS[self.sort]

    def params(self) -> dict[str, str]:
        named = {"status": self.status, "category": self.category, "source": self.source, "text": self.text,
                 "sort": self.sort, "days": str(self.days) if self.days != 30 else None}
        return {k: v for k, v in named.items() if v}



def _case_where(scope: Scope, wanted: CaseFilter) -> tuple[str, tuple]:
    clauses, args = [], []
    if scope.code:
        clauses.append("org_contains(%s, org_code)")
        args.append(scope.code)
    status = wanted.status
    if status in ("open", "overdue", "escalated", "unacknowledged"):
        clauses.append("state <> all(%s)")
        args.append(values(FINISHED))
        if status == "overdue":
            clauses.append("deadline < now()")
        elif status == "escalated":
            clauses.append("escalation_level is not null and escalation_level <> 'grid'")
        elif status == "unacknowledged":
            clauses.append("source = 'sos' and acknowledged_by is null")
    else:
        clauses.append("opened_at >= now() - %s * interval '1 day'")
        args.append(wanted.days)
        if status == "finished":
            clauses.append("state = any(%s)")
            args.append(values(FINISHED))
        elif status != "all":
            clauses.append("state = %s")
            args.append(status)
    _equal(clauses, args, category=wanted.category, source=wanted.source)
    if wanted.text:
        clauses.append("(case_id ilike %s or title ilike %s or place ilike %s)")
        args.extend([_like_escape(wanted.text) + "%"] + ["%" + _like_escape(wanted.text) + "%"] * 2)
    return " and ".join(clauses) or "true", tuple(args)


@dataclass(frozen=True)
class AuditFilter:
    """What of the audit trail a leader asks for: a period of local days, and optionally one
    action, one outcome, and a part of the actor's name."""
    first_day: date
    last_day: date                 # inclusive
    action: str | None = None
    outcome: str | None = None     # 'done' or 'refused'
    actor: str | None = None

    DEFAULT_DAYS: ClassVar[int] = 7
    MAX_DAYS: ClassVar[int] = 400

    @classmethod
    def from_params(cls, params: dict, today: date | None = None) -> AuditFilter:
        """From a page's controls or an export's query string; ValueError says what is wrong."""
        today = today or datetime.now(CITY_TZ).date()
        last = _day(params.get("to")) or today
        first = _day(params.get("from")) or last - timedelta(days=cls.DEFAULT_DAYS - 1)
        if first > last:
            raise ValueError(f"the period starts ({first}) after it ends ({last})")
        if (last - first).days >= cls.MAX_DAYS:
            raise ValueError(f"a period has at most {cls.MAX_DAYS} days")
        outcome = params.get("outcome") or None
        if outcome not in (None, "done", "refused"):
            raise ValueError(f"{outcome!r} is not an outcome (done or refused)")
        actor = (params.get("actor") or "").strip()[:64] or None
        return cls(first, last, params.get("action") or None, outcome, actor)

    def params(self) -> dict[str, str]:
        """As a query string's parameters (the export link)."""
        named = {"from": self.first_day.isoformat(), "to": self.last_day.isoformat(), "action": self.action,
                 "outcome": self.outcome, "actor": self.actor}
        return {k: v for k, v in named.items() if v}


def _day(value) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise ValueError(f"{value!r} is not a day (YYYY-MM-DD)") from None


def _audit_where(scope: Scope, wanted: AuditFilter) -> tuple[str, tuple]:
    start = datetime.combine(wanted.first_day, datetime.min.time(), CITY_TZ)
    end = datetime.combine(wanted.last_day + timedelta(days=1), datetime.min.time(), CITY_TZ)
    clauses, args = ["time >= %s", "time < %s"], [start, end]
    if scope.code:
        clauses.append("org_contains(%s, scope_code)")
        args.append(scope.code)
    _equal(clauses, args, action=wanted.action, outcome=wanted.outcome)
    if wanted.actor:
        clauses.append("actor ilike %s")
        args.append("%" + _like_escape(wanted.actor) + "%")
    return " and ".join(clauses), tuple(args)


def _equal(clauses: list[str], args: list, **columns) -> None:
    """`column = value` for each column given a value (the filters' plain choices)."""
    for column, value in columns.items():
        if value:
            clauses.append(f"{column} = %s")
            args.append(value)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")



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


def period_bounds(period: Period) -> tuple[datetime, datetime]:
    """The period's first and last day as instants: [its first day's start, the day after its last), city time."""
    start = datetime.combine(period.first, datetime.min.time(), CITY_TZ)
    return start, datetime.combine(period.last + timedelta(days=1), datetime.min.time(), CITY_TZ)

"""What the assessment and the replay read: a scope's indicators for a period (kpis.report, from
the rollups), the field's own figures (alarms, announcements), the diary, the cases overdue now
and those sent back for rework, and a member's track with what they did meanwhile."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from cases import store as case_store
from cases.model import FINISHED, Case, State, values
from cases.reads import SELECT_CASES
from core.city import CITY_TZ
from core.orgcodes import Scope
from database import binary_copy
from database.reads import Reads
from kpis import report as kpi_report
from kpis.report import Period, Report
from kpis.tracks import Track


class KpiReads(Reads):
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
        rows = self.rows(f"{SELECT_CASES} where {where} order by deadline limit %s", (*args, limit))
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
        cases = {row[0]: case_store.from_row(row) for row in self.rows(f"{SELECT_CASES} where case_id = any(%s)",
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


def period_bounds(period: Period) -> tuple[datetime, datetime]:
    """The period's first and last day as instants: [its first day's start, the day after its last), city time."""
    start = datetime.combine(period.first, datetime.min.time(), CITY_TZ)
    return start, datetime.combine(period.last + timedelta(days=1), datetime.min.time(), CITY_TZ)

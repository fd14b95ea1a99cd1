"""Emergency verification (紧急核实) on a case: what a member asked to check it is told, and the case
a member's answer belongs to. Both read the database on the caller's cursor (in the caller's
transaction); the decisions are the machine's (cases.machine: RequestCheck, CheckAnswer).

    a dispatcher asks        dashboard/case_checks.py: RequestCheck, filled in by `what_to_check`,
                             written with a `check` notice to the member's terminal (cases.notices)
    the member answers       gcc/v1/terminal/<id>/alarm/check (telemetry/kinds/alarm_check.py),
                             stored by the ingest, handed to the intake (migration 0031), applied
                             as a CheckAnswer by that terminal (cases.intake): a `check` event
"""
from __future__ import annotations

from dataclasses import replace

from cases import store
from cases.model import Case, RequestCheck, Source
from core.city import City


def what_to_check(cur, case: Case, request: RequestCheck, city: City) -> RequestCheck:
    """The request with what to check filled in: for an alarm's case the alarm (the newest raised
    of the case's sources), for an SOS's case who raised it, their name, and their last position
    (with its time)."""
    if case.source is Source.ALARM:
        cur.execute("select key from case_sources where case_id = %s and kind = 'alarm' "
                    "order by split_part(key, '/', 3) = 'raised' desc, time desc limit 1", (case.case_id,))
        row = cur.fetchone()
        if row is None:
            return request
        sensor_id, alarm_id, _state = row[0].rsplit("/", 2)
        return replace(request, sensor_id=sensor_id, alarm_id=alarm_id)
    if case.source is Source.SOS and case.source_key:
        terminal_id = case.source_key.removeprefix("sos:")
        member = city.member_by_terminal.get(terminal_id)
        cur.execute("select lat, lon, time from positions where terminal_id = %s order by time desc limit 1",
                    (terminal_id,))
        lat, lon, at = cur.fetchone() or (None, None, None)
        return replace(request, sos_terminal_id=terminal_id, sos_name=member.name if member else None,
                       sos_lat=lat, sos_lon=lon, sos_at=at.isoformat() if at else None)
    return request


def case_of_answer(cur, case_id: str | None, sensor_id: str | None, alarm_id: str | None) -> Case | None:
    """The case an answer is about (locked): the one it names, else the case its alarm went into
    (None: no such case, or an alarm that made no case, e.g. below the severity that does)."""
    if case_id:
        return store.load(cur, case_id)
    if not (sensor_id and alarm_id):
        return None
    cur.execute("select case_id from case_sources where kind = 'alarm' and key = any(%s) order by time desc limit 1",
                ([f"{sensor_id}/{alarm_id}/raised", f"{sensor_id}/{alarm_id}/cleared"],))
    row = cur.fetchone()
    return store.load(cur, row[0]) if row else None

"""Reading the stored live state back, in the shapes of telemetry.live.changes."""
from __future__ import annotations

import time
from dataclasses import dataclass

import orjson

from core.catalogue import MemberState
from telemetry.live.changes import AlarmChange, ReportChange, change_from
from telemetry.live.keys import REPORT_WINDOW_S, SILENT_AFTER_S, Keys, TerminalField

# --- reading the stored live state back --------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TerminalLive:
    """A terminal's live state as the writer keeps it in `gcc:term:<id>`."""
    terminal_id: str
    member_id: str | None
    grid_code: str | None          # where its last fix lies
    lon: float
    lat: float
    t: float                       # its last fix's time
    state: str                     # MemberState value, silence taken into account
    state_t: float                 # when the state last changed
    battery_pct: int | None = None
    sos: bool = False


def read_terminals(r, terminal_ids: list[str], now: float | None = None) -> list[TerminalLive]:
    """The live state of these terminals, those with a known position only. A terminal the sweep
    has not reached yet but that has been quiet for SILENT_AFTER_S is already shown silent."""
    now = now if now is not None else time.time()
    pipe = r.pipeline(transaction=False)
    for terminal_id in terminal_ids:
        pipe.hgetall(Keys.terminal(terminal_id))
    f = TerminalField
    out = []
    for terminal_id, raw in zip(terminal_ids, pipe.execute(), strict=True):
        h = {k.decode(): v.decode() for k, v in raw.items()}
        if f.LON not in h:
            continue
        state = h.get(f.STATE, MemberState.SILENT.value)
        if state == MemberState.ONLINE.value and now - float(h.get(f.SEEN) or now) > SILENT_AFTER_S:
            state = MemberState.SILENT.value
        out.append(TerminalLive(terminal_id, h.get(f.MEMBER_ID) or None, h.get(f.GRID_CODE) or None,
                                float(h[f.LON]), float(h[f.LAT]), float(h.get(f.T) or 0), state,
                                float(h.get(f.STATE_T) or 0), _int(h.get(f.BATTERY_PCT)), h.get(f.SOS) == "1"))
    return out


_WHEREABOUTS = (TerminalField.LON, TerminalField.LAT, TerminalField.T, TerminalField.STATE, TerminalField.STATE_T,
                TerminalField.SEEN, TerminalField.GRID_CODE)


def read_whereabouts(r, terminal_ids: list[str], now: float | None = None) -> list[TerminalLive]:
    """Where these terminals are and whether they are online, for many at once (the dispatch
    candidates): `read_terminals` with only the fields that says (no member id, battery or SOS)."""
    now = now if now is not None else time.time()
    pipe = r.pipeline(transaction=False)
    for terminal_id in terminal_ids:
        pipe.hmget(Keys.terminal(terminal_id), _WHEREABOUTS)
    out = []
    for terminal_id, values in zip(terminal_ids, pipe.execute(), strict=True):
        lon, lat, t, state, state_t, seen, grid_code = (v.decode() if v is not None else None for v in values)
        if lon is None:
            continue
        state = state or MemberState.SILENT.value
        if state == MemberState.ONLINE.value and now - float(seen or now) > SILENT_AFTER_S:
            state = MemberState.SILENT.value
        out.append(TerminalLive(terminal_id, None, grid_code or None, float(lon), float(lat), float(t or 0), state,
                                float(state_t or 0)))
    return out


def read_open_alarms(r) -> list[AlarmChange]:
    """The open device alarms (who acknowledged one is the database's: dashboard.queries)."""
    return [change_from(AlarmChange.KIND, orjson.loads(raw)) for raw in r.hvals(Keys.OPEN_ALARMS)]


def read_open_alarm(r, sensor_id: str, alarm_id: str) -> AlarmChange | None:
    """One sensor's open alarm, or None when it is not open."""
    raw = r.hget(Keys.OPEN_ALARMS, Keys.alarm_field(sensor_id, alarm_id))
    return change_from(AlarmChange.KIND, orjson.loads(raw)) if raw else None


def read_recent_reports(r, now: float | None = None) -> list[ReportChange]:
    now = now if now is not None else time.time()
    ids = r.zrangebyscore(Keys.REPORTS, now - REPORT_WINDOW_S, "+inf")
    if not ids:
        return []
    values = r.mget([Keys.report(i.decode()) for i in ids])
    return [change_from(ReportChange.KIND, orjson.loads(v)) for v in values if v]


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None

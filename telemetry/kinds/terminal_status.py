"""A terminal's status: online/offline, battery, SOS (retained; also its last will)."""
from __future__ import annotations

from dataclasses import dataclass

from telemetry.fields import BatteryPct, FixSource, Id, OnlineState, UtcTime, WireMessage
from telemetry.kinds import JsonTopic, Kind, LiveChange, Tagged, live_time, register


class TerminalStatus(WireMessage):
    terminal_id: Id
    time: UtcTime
    state: OnlineState
    battery_pct: BatteryPct | None = None
    sos: bool = False
    will: bool = False   # the broker published it: the terminal's last will (its time is set at connect)
    source: FixSource


@dataclass(frozen=True, slots=True)
class StatusChange(LiveChange):
    KIND = "status"
    ROUTE_FIELD = "home_grid_code"
    COALESCE_FIELDS = ("terminal_id",)
    terminal_id: str
    member_id: str
    home_grid_code: str
    t: float
    state: str                     # a MemberState value
    battery_pct: int | None = None
    sos: bool = False


def _change(item: Tagged) -> StatusChange:
    m: TerminalStatus = item.message
    return StatusChange(m.terminal_id, item.member_id, item.home_grid_code, live_time(item), m.state, m.battery_pct,
                        m.sos)


KIND = register(Kind(
    "terminal_status", TerminalStatus, "terminal", "terminal_status",
    ("time", "terminal_id", "state", "battery_pct", "sos", "grid_code", "received_at"),
    ("terminal_id", "time"),
    lambda e, at: (e.message.time, e.message.terminal_id, e.message.state, e.message.battery_pct, e.message.sos,
                   e.grid_code, at),
    retention_days=400,            # as positions: who was on duty
    json=JsonTopic("terminal", "status", frozenset({"state", "battery_pct", "sos", "will"}), {"source": "gcc"}),
    change=_change, change_type=StatusChange))

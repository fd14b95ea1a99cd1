"""An alarm checked on site (紧急核实, the handheld's emergency verification): a member near a device
alarm goes to look and says what they found — the alarm is real, it is a false alarm, or they need
help — from their terminal (gcc/v1/terminal/<id>/alarm/check). Stored for the alarm's record and
the assessment; the live bus carries it to the screens of the member's grid."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from telemetry.fields import Id, Text, UtcTime, WireMessage
from telemetry.kinds import JsonTopic, Kind, LiveChange, Tagged, live_time, register

Outcome = Literal["confirmed", "false_alarm", "need_help"]


class AlarmCheck(WireMessage):
    """What a member found at an alarm: the alarm is (sensor_id, alarm_id), as everywhere."""
    terminal_id: Id
    time: UtcTime
    sensor_id: Id
    alarm_id: Id
    outcome: Outcome
    note: Annotated[Text, Field(max_length=500)] | None = None
    photo_ref: Annotated[Text, Field(max_length=512)] | None = None


@dataclass(frozen=True, slots=True)
class AlarmCheckChange(LiveChange):
    KIND = "alarm_check"
    ROUTE_FIELD = "home_grid_code"
    sensor_id: str
    alarm_id: str
    terminal_id: str
    member_id: str
    home_grid_code: str
    t: float
    outcome: str
    note: str | None = None


def _change(item: Tagged) -> AlarmCheckChange:
    m: AlarmCheck = item.message
    return AlarmCheckChange(m.sensor_id, m.alarm_id, m.terminal_id, item.member_id, item.home_grid_code,
                            live_time(item), m.outcome, m.note)


KIND = register(Kind(
    "alarm_check", AlarmCheck, "terminal", "alarm_checks",
    ("time", "terminal_id", "member_id", "grid_code", "sensor_id", "alarm_id", "outcome", "note", "photo_ref",
     "received_at"),
    ("terminal_id", "sensor_id", "alarm_id", "time"),
    lambda e, at: (e.message.time, e.message.terminal_id, e.member_id, e.home_grid_code, e.message.sensor_id,
                   e.message.alarm_id, e.message.outcome, e.message.note, e.message.photo_ref, at),
    retention_days=1825,           # an alarm's record, kept as the alarm is
    json=JsonTopic("terminal", "alarm/check", frozenset({"sensor_id", "alarm_id", "outcome", "note", "photo_ref"})),
    change=_change, change_type=AlarmCheckChange))

"""A device alarm, raised or cleared, sent by the sensor's gateway in our JSON."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson
from pydantic import Field

from core.catalogue import AlarmType
from telemetry.fields import Detail, Id, SeverityLevel, UtcTime, WireMessage
from telemetry.kinds import JsonTopic, Kind, LiveChange, Tagged, live_time, register


class DeviceAlarm(WireMessage):
    alarm_id: Id
    sensor_id: Id
    time: UtcTime
    alarm_type: AlarmType = Field(strict=False)  # accepts the enum's string value
    severity: SeverityLevel
    state: Literal["raised", "cleared"]
    value: float | None = None
    detail: Detail = None
    gateway_id: Id | None = None


@dataclass(frozen=True, slots=True)
class AlarmChange(LiveChange):
    KIND = "alarm"
    alarm_id: str
    sensor_id: str
    building_id: str
    grid_code: str
    t: float
    alarm_type: str
    severity: int
    state: str                     # raised / cleared
    value: float | None = None
    lon: float | None = None       # the sensor's place (reference data)
    lat: float | None = None
    acknowledged_by: str | None = None   # filled in by the screens' queries from the database, never
    acknowledged_at: float | None = None   # by the ingest (an acknowledgement travels as AlarmAckChange)


def _change(item: Tagged) -> AlarmChange:
    m: DeviceAlarm = item.message
    lon, lat = item.place or (None, None)
    return AlarmChange(m.alarm_id, m.sensor_id, item.building_id, item.grid_code, live_time(item), m.alarm_type.value,
                       m.severity, m.state, m.value, lon, lat)


def _detail(m: DeviceAlarm) -> str | None:
    return orjson.dumps(m.detail).decode() if m.detail is not None else None


KIND = register(Kind(
    "alarm", DeviceAlarm, "sensor", "device_alarms",
    ("time", "alarm_id", "sensor_id", "alarm_type", "severity", "state", "value", "detail", "gateway_id",
     "building_id", "grid_code", "received_at"),
    ("sensor_id", "alarm_id", "state", "time"),
    lambda e, at: (e.message.time, e.message.alarm_id, e.message.sensor_id, e.message.alarm_type.value,
                   e.message.severity, e.message.state, e.message.value, _detail(e.message),
                   e.message.gateway_id, e.building_id, e.grid_code, at),
    retention_days=1825,           # case records: audited years later
    json=JsonTopic("gateway", "alarm", frozenset({"alarm_id", "sensor_id", "alarm_type", "severity", "state", "value",
                                                  "detail"})),
    change=_change, change_type=AlarmChange))

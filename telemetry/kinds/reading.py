"""Sensor readings: a gateway's readings in our JSON (a list of them per message), or in SenML
(telemetry.decoders.senml, on the gateway's `senml` leaf)."""
from __future__ import annotations

from dataclasses import dataclass

from pydantic import model_validator

from telemetry.fields import Id, Text, UtcTime, WireMessage
from telemetry.kinds import JsonTopic, Kind, LiveChange, Tagged, live_time, register


class SensorReading(WireMessage):
    """One measurement: exactly one of value / value_text / value_bool, or only value_sum."""
    sensor_id: Id
    time: UtcTime
    quantity: Id
    value: float | None = None
    value_text: Text | None = None
    value_bool: bool | None = None
    value_sum: float | None = None
    unit: Text | None = None
    gateway_id: Id | None = None

    @model_validator(mode="after")
    def _one_value(self) -> SensorReading:
        given = [name for name in ("value", "value_text", "value_bool")
                 if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"exactly one of value, value_text, value_bool may be set, got {given}")
        if not given and self.value_sum is None:
            raise ValueError("one of value, value_text, value_bool (or value_sum alone) is required")
        return self


@dataclass(frozen=True, slots=True)
class ReadingChange(LiveChange):
    KIND = "reading"
    COALESCE_FIELDS = ("sensor_id", "quantity")
    sensor_id: str
    grid_code: str
    t: float
    quantity: str
    value: float | None = None
    value_bool: bool | None = None
    value_text: str | None = None
    value_sum: float | None = None
    unit: str | None = None


def _change(item: Tagged) -> ReadingChange:
    m: SensorReading = item.message
    return ReadingChange(m.sensor_id, item.grid_code, live_time(item), m.quantity, value=m.value,
                         value_bool=m.value_bool, value_text=m.value_text, value_sum=m.value_sum, unit=m.unit)


KIND = register(Kind(
    "reading", SensorReading, "sensor", "sensor_readings",
    ("time", "sensor_id", "quantity", "value", "value_text", "value_bool", "value_sum", "unit", "gateway_id",
     "building_id", "grid_code", "received_at"),
    ("sensor_id", "quantity", "time"),
    lambda e, at: (e.message.time, e.message.sensor_id, e.message.quantity, e.message.value, e.message.value_text,
                   e.message.value_bool, e.message.value_sum, e.message.unit, e.message.gateway_id,
                   e.building_id, e.grid_code, at),
    retention_days=400,            # a year of meters, compared year on year
    json=JsonTopic("gateway", "reading", frozenset({"sensor_id", "quantity", "value", "value_text", "value_bool",
                                                    "unit"}), records="readings"),
    change=_change, change_type=ReadingChange))

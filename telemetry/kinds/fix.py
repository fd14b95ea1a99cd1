"""A GPS fix: where a member's handheld terminal (our JSON) or phone (OwnTracks, OsmAnd) is."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from telemetry.fields import BatteryPct, FixSource, Id, Latitude, Longitude, NonNegative, UtcTime, WireMessage
from telemetry.kinds import JsonTopic, Kind, LiveChange, Tagged, live_time, register


class Fix(WireMessage):
    """A GPS fix of a member's handheld terminal (our JSON) or a phone running OwnTracks."""
    terminal_id: Id
    time: UtcTime
    lat: Latitude
    lon: Longitude
    accuracy_m: NonNegative | None = None
    speed_mps: NonNegative | None = None
    heading_deg: Annotated[float, Field(ge=0, lt=360)] | None = None
    altitude_m: float | None = None
    battery_pct: BatteryPct | None = None
    source: FixSource
    device: Id | None = None  # the OwnTracks device name (second topic level)


@dataclass(frozen=True, slots=True)
class FixChange(LiveChange):
    KIND = "fix"
    ROUTE_FIELD = "home_grid_code"
    COALESCE_FIELDS = ("terminal_id",)
    terminal_id: str
    member_id: str
    home_grid_code: str
    grid_code: str | None          # where the fix lies
    t: float
    lon: float
    lat: float
    battery_pct: int | None = None
    speed_mps: float | None = None
    heading_deg: float | None = None
    accuracy_m: float | None = None


def _change(item: Tagged) -> FixChange:
    m: Fix = item.message
    return FixChange(m.terminal_id, item.member_id, item.home_grid_code, item.grid_code, live_time(item), m.lon, m.lat,
                     m.battery_pct, m.speed_mps, m.heading_deg, m.accuracy_m)


KIND = register(Kind(
    "fix", Fix, "terminal", "positions",
    ("time", "terminal_id", "member_id", "grid_code", "lat", "lon", "accuracy_m", "speed_mps", "heading_deg",
     "altitude_m", "battery_pct", "source", "received_at"),
    ("terminal_id", "time"),
    lambda e, at: (e.message.time, e.message.terminal_id, e.member_id, e.grid_code, e.message.lat, e.message.lon,
                   e.message.accuracy_m, e.message.speed_mps, e.message.heading_deg, e.message.altitude_m,
                   e.message.battery_pct, e.message.source, at),
    retention_days=400,            # a year of patrols, and the same month a year back
    json=JsonTopic("terminal", "fix", frozenset({"lat", "lon", "accuracy_m", "speed_mps", "heading_deg", "altitude_m",
                                                 "battery_pct"}), {"source": "gcc"}),
    change=_change, change_type=FixChange,
    located=True, outside_city_ok=True))       # a member near the edge: "out of area"

"""An OwnTracks region (waypoint) enter/leave event (telemetry.decoders.owntracks; no JSON of ours)."""
from __future__ import annotations

from typing import Literal

from telemetry.fields import Id, Latitude, Longitude, NonNegative, Text, UtcTime, WireMessage
from telemetry.kinds import Kind, register


class RegionTransition(WireMessage):
    """An OwnTracks region (waypoint) enter/leave event. The booklet marks lat/lon optional."""
    terminal_id: Id
    time: UtcTime
    event: Literal["enter", "leave"]
    region: Text | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None
    accuracy_m: NonNegative | None = None


KIND = register(Kind(
    "region_transition", RegionTransition, "terminal", "region_transitions",
    ("time", "terminal_id", "event", "region", "lat", "lon", "accuracy_m", "grid_code", "received_at"),
    ("terminal_id", "event", "time"),
    lambda e, at: (e.message.time, e.message.terminal_id, e.message.event, e.message.region, e.message.lat,
                   e.message.lon, e.message.accuracy_m, e.grid_code, at),
    retention_days=400,            # as positions
    located=True, outside_city_ok=True))

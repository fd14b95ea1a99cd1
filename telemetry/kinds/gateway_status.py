"""A gateway's status: online/offline (retained; also its last will)."""
from __future__ import annotations

from dataclasses import dataclass

from telemetry.fields import Id, OnlineState, UtcTime, WireMessage
from telemetry.kinds import JsonTopic, Kind, LiveChange, Tagged, live_time, register


class GatewayStatus(WireMessage):
    gateway_id: Id
    time: UtcTime
    state: OnlineState
    will: bool = False   # the broker published it: the gateway's last will (its time is set at connect)


@dataclass(frozen=True, slots=True)
class GatewayChange(LiveChange):
    KIND = "gateway"
    COALESCE_FIELDS = ("gateway_id",)
    gateway_id: str
    grid_code: str
    t: float
    state: str


def _change(item: Tagged) -> GatewayChange:
    m: GatewayStatus = item.message
    return GatewayChange(m.gateway_id, item.grid_code, live_time(item), m.state)


KIND = register(Kind(
    "gateway_status", GatewayStatus, "gateway", "gateway_status",
    ("time", "gateway_id", "state", "grid_code", "received_at"),
    ("gateway_id", "time"),
    lambda e, at: (e.message.time, e.message.gateway_id, e.message.state, e.grid_code, at),
    retention_days=400,            # as the readings it explains (gaps)
    json=JsonTopic("gateway", "status", frozenset({"state", "will"})),
    change=_change, change_type=GatewayChange))

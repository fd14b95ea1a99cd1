"""The ingest chain's pure stages, in order: size → decode → time check → known device →
enrich (grid code). Each stage passes the message on or stops it with a `Rejection` (a reason
code and a specific detail) that becomes a dead letter. Storing, live state, live events and the
acknowledgement come after, batched (worker.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from telemetry.city import City
from telemetry.decoders import DecodeError, decode
from telemetry.gridindex import GridIndex
from telemetry.messages import (DeviceAlarm, Fix, GatewayStatus, IncidentReport, Message,
                                RegionTransition, SensorReading, TaskAck, TerminalStatus)

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_FUTURE = timedelta(minutes=5)     # device clocks drift; more than this is a broken clock
MAX_PAST = timedelta(days=7)          # terminals buffer offline; older than this is refused

REASONS = ("payload_too_large", "invalid_json", "schema_violation", "wrong_topic", "unsupported_type",
           "invalid_senml", "timestamp_future", "timestamp_past", "unknown_device", "outside_city",
           "db_rejected")


@dataclass(frozen=True)
class Inbound:
    """One MQTT message as the broker delivered it (immutable)."""
    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    received_at: datetime
    dup: bool = False
    epoch: int = 0                  # which broker connection delivered it (acks go to that one only)
    http_identity: tuple[str | None, str | None] | None = None  # OwnTracks HTTP mode: (user, device)
    reply: object = None            # HTTP mode: a Reply the worker fills in after the commit


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str


@dataclass(frozen=True)
class Enriched:
    """A decoded message with what the chain learned about it."""
    message: Message
    grid_code: str | None = None
    member_id: str | None = None
    building_id: str | None = None


@dataclass
class Outcome:
    inbound: Inbound
    accepted: list[Enriched] = field(default_factory=list)
    rejection: Rejection | None = None


class Registry:
    """What the chain knows about devices: the city's reference data, indexed."""

    def __init__(self, city: City) -> None:
        self.city = city
        self.grids = GridIndex(city.grids)
        self.members = city.member_by_terminal
        self.sensors = city.sensor_by_id
        self.gateways = city.gateway_by_id


def _time_check(msg: Message, received_at: datetime) -> Rejection | None:
    if msg.time - received_at > MAX_FUTURE:
        return Rejection("timestamp_future", f"time {msg.time.isoformat()} is "
                         f"{(msg.time - received_at).total_seconds():.0f} s ahead of the server clock")
    if received_at - msg.time > MAX_PAST:
        return Rejection("timestamp_past", f"time {msg.time.isoformat()} is older than "
                         f"{MAX_PAST.days} days")
    return None


def _known(msg: Message, reg: Registry) -> Rejection | None:
    if isinstance(msg, (Fix, TerminalStatus, IncidentReport, TaskAck, RegionTransition)):
        if msg.terminal_id not in reg.members:
            return Rejection("unknown_device", f"terminal {msg.terminal_id!r} is not registered to any member")
    elif isinstance(msg, (SensorReading, DeviceAlarm)):
        sensor = reg.sensors.get(msg.sensor_id)
        if sensor is None:
            return Rejection("unknown_device", f"sensor {msg.sensor_id!r} is not registered")
        if msg.gateway_id is not None and sensor.gateway_id != msg.gateway_id:
            return Rejection("unknown_device", f"sensor {msg.sensor_id!r} belongs to gateway "
                             f"{sensor.gateway_id!r}, not {msg.gateway_id!r}")
    elif isinstance(msg, GatewayStatus) and msg.gateway_id not in reg.gateways:
        return Rejection("unknown_device", f"gateway {msg.gateway_id!r} is not registered")
    return None


def _enrich(msg: Message, reg: Registry) -> Enriched | Rejection:
    if isinstance(msg, (Fix, IncidentReport)):
        grid = reg.grids.locate(msg.lon, msg.lat)
        if grid is None:
            return Rejection("outside_city", f"position lat={msg.lat} lon={msg.lon} lies outside every grid")
        return Enriched(msg, grid, reg.members[msg.terminal_id].member_id)
    if isinstance(msg, RegionTransition):
        grid = reg.grids.locate(msg.lon, msg.lat) if msg.lat is not None and msg.lon is not None else None
        return Enriched(msg, grid, reg.members[msg.terminal_id].member_id)
    if isinstance(msg, (TerminalStatus, TaskAck)):
        member = reg.members[msg.terminal_id]
        return Enriched(msg, member.grid_code, member.member_id)
    if isinstance(msg, (SensorReading, DeviceAlarm)):
        sensor = reg.sensors[msg.sensor_id]
        return Enriched(msg, sensor.grid_code, building_id=sensor.building_id)
    if isinstance(msg, GatewayStatus):
        gateway = reg.gateways[msg.gateway_id]
        return Enriched(msg, gateway.grid_code, building_id=gateway.building_id)
    raise TypeError(f"no enrichment for {type(msg).__name__}")


def _decode(inbound: Inbound) -> list[Message]:
    if inbound.http_identity is not None:
        from telemetry.decoders import owntracks
        user, device = inbound.http_identity
        return owntracks.decode_http(inbound.payload, user, device, inbound.received_at)
    return decode(inbound.topic, inbound.payload, inbound.received_at)


def process(inbound: Inbound, reg: Registry) -> Outcome:
    """Run one message through the chain. Never raises for bad input: it is a Rejection."""
    outcome = Outcome(inbound)
    if len(inbound.payload) > MAX_PAYLOAD_BYTES:
        outcome.rejection = Rejection("payload_too_large", f"{len(inbound.payload)} bytes, more than "
                                      f"the limit of {MAX_PAYLOAD_BYTES}")
        return outcome
    try:
        messages = _decode(inbound)
    except DecodeError as exc:
        outcome.rejection = Rejection(exc.reason, exc.detail)
        return outcome
    for msg in messages:
        rejection = _time_check(msg, inbound.received_at) or _known(msg, reg)
        result = rejection or _enrich(msg, reg)
        if isinstance(result, Rejection):
            # one bad record spoils the whole message: a pack is accepted or refused as sent
            outcome.accepted.clear()
            outcome.rejection = result
            return outcome
        outcome.accepted.append(result)
    return outcome



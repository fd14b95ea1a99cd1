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
from telemetry.messages import (
    DeviceAlarm,
    Fix,
    GatewayStatus,
    IncidentReport,
    Message,
    RegionTransition,
    SensorReading,
    TaskAck,
    TerminalStatus,
)

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_FUTURE = timedelta(minutes=5)     # device clocks drift; more than this is a broken clock
MAX_PAST = timedelta(days=7)          # terminals buffer offline; older than this is refused


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
    home_grid: str | None = None     # the member's own grid (a fix may lie elsewhere)


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


_LOCATED = (Fix, IncidentReport, RegionTransition)
_UNSET = object()


def _position(msg: Message) -> tuple[float, float] | None:
    if isinstance(msg, _LOCATED) and msg.lat is not None and msg.lon is not None:
        return msg.lon, msg.lat
    return None


def _enrich(msg: Message, reg: Registry, grid=_UNSET) -> Enriched | Rejection:
    """Tag a message with its grid (from its position, or its device's), member and building.
    `grid` is the already-located grid of a positioned message (batch lookups), if known."""
    if isinstance(msg, _LOCATED):
        position = _position(msg)
        if grid is _UNSET:
            grid = reg.grids.locate(*position) if position else None
        if grid is None and position is not None and not isinstance(msg, RegionTransition):
            return Rejection("outside_city", f"position lat={msg.lat} lon={msg.lon} lies outside every grid")
        member = reg.members[msg.terminal_id]
        return Enriched(msg, grid, member.member_id, home_grid=member.grid_code)
    if isinstance(msg, (TerminalStatus, TaskAck)):
        member = reg.members[msg.terminal_id]
        return Enriched(msg, member.grid_code, member.member_id, home_grid=member.grid_code)
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


def _validate(inbound: Inbound, reg: Registry) -> tuple[Outcome, list[Message]]:
    """Size, decode, time and device checks: the messages to enrich, or a rejection."""
    outcome = Outcome(inbound)
    if len(inbound.payload) > MAX_PAYLOAD_BYTES:
        outcome.rejection = Rejection("payload_too_large", f"{len(inbound.payload)} bytes, more than "
                                      f"the limit of {MAX_PAYLOAD_BYTES}")
        return outcome, []
    try:
        messages = _decode(inbound)
    except DecodeError as exc:
        outcome.rejection = Rejection(exc.reason, exc.detail)
        return outcome, []
    for msg in messages:
        rejection = _time_check(msg, inbound.received_at) or _known(msg, reg)
        if rejection is not None:
            outcome.rejection = rejection  # one bad record refuses the whole message, as sent
            return outcome, []
    return outcome, messages


def _finish(outcome: Outcome, messages: list[Message], reg: Registry, grids: list) -> Outcome:
    for msg, grid in zip(messages, grids):
        result = _enrich(msg, reg, grid)
        if isinstance(result, Rejection):
            outcome.accepted.clear()
            outcome.rejection = result
            return outcome
        outcome.accepted.append(result)
    return outcome


def process(inbound: Inbound, reg: Registry) -> Outcome:
    """Run one message through the chain. Never raises for bad input: it is a Rejection."""
    outcome, messages = _validate(inbound, reg)
    return _finish(outcome, messages, reg, [_UNSET] * len(messages))


def process_batch(inbounds: list[Inbound], reg: Registry) -> list[Outcome]:
    """The same chain for a batch, with one vectorised point → grid lookup for all positions."""
    validated = [_validate(inbound, reg) for inbound in inbounds]
    positions = [p for _, messages in validated for m in messages if (p := _position(m)) is not None]
    located = iter(reg.grids.locate_many([p[0] for p in positions], [p[1] for p in positions])
                   if positions else [])
    outcomes = []
    for outcome, messages in validated:
        grids = [next(located) if _position(m) is not None else _UNSET for m in messages]
        outcomes.append(_finish(outcome, messages, reg, grids))
    return outcomes

"""The ingest chain's pure stages. Per message, in order:

    check_rate → check_size → decode → check_time → check_device   (VALIDATION, each may stop it)
    → enrich (grid from the position, one vectorised lookup per batch; member, building, home grid)

A stage passes the message on or stops it with a `Rejection` (a reason code and a specific
detail) that becomes a dead letter. What each message type needs (sender, position, table) comes
from its kind's declaration (telemetry.kinds). Storing, live state, the live bus and the acknowledgement come
after, per batch (worker.py).

A stage that raises (a bug, not bad input) is contained: that message alone becomes a dead letter
with the reason `poison` (the exception's type, place and message); the rest of the batch goes on.
`check_rate` is the one stage with state: the worker's `RateLimiter`, a token bucket per sending
device, and its `Budgets`, tighter buckets per device for incident reports and alarms (ingest.limits),
fed with each message's own reception time (no clock of their own).

After them, per batch: `refuse_forged_clears`, the one check that looks across devices (an alarm
`cleared` by a sensor that never raised that id, while another sensor did), told by the worker what
the database knows.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from core.city import BOUNDARY_TABLES, City
from core.gridindex import GridIndex
from ingest.limits import Budgets, RateLimiter, RefusalDigest
from ingest.model import (
    FOREIGN_ID,
    PAYLOAD_TOO_LARGE,
    RATE_LIMITED,
    RETIRED_DEVICE,
    UNKNOWN_DEVICE,
    Enriched,
    Inbound,
    Outcome,
    Rejection,
    poison,
)
from telemetry.decoders import DecodeError, decode, osmand, owntracks, senml
from telemetry.kinds import kind_of
from telemetry.messages import DeviceAlarm, GatewayStatus, Message, TerminalStatus
from telemetry.topics import OWNTRACKS_PREFIX, PREFIX

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_FUTURE = timedelta(minutes=5)     # device clocks drift; more than this is a broken clock
MAX_PAST = timedelta(days=7)          # terminals buffer offline; older than this is refused
_PREFIX_ROOT, _PREFIX_VERSION = PREFIX.split("/")


class Registry:
    """What the chain knows about devices: the city's reference data, indexed. Immutable once
    built: a registry change builds a new one (`updated`) that the worker swaps in between batches."""

    def __init__(self, city: City, grids: GridIndex | None = None) -> None:
        self.city = city
        self.grids = grids if grids is not None else GridIndex(city.grids)
        self.members = city.member_by_terminal
        self.sensors = city.sensor_by_id
        self.gateways = city.gateway_by_id
        self.retired = dict(city.retired)
        self.sensor_names = senml.SensorNames(self.sensors)

    def updated(self, city: City, tables: frozenset[str] | None) -> Registry:
        """The registry of a city read again; the grid index is rebuilt only if boundaries changed."""
        boundaries = tables is None or not BOUNDARY_TABLES.isdisjoint(tables)
        return Registry(city, None if boundaries else self.grids)


def _by_login(inbound: Inbound) -> bool:
    """An HTTP message whose sender is its login (OwnTracks, OsmAnd). One on our own topics (the
    handheld's: the server made the topic from the signed-in phone's terminal) is taken as that
    topic's, as over MQTT; its http_identity only says which phone sent it."""
    return inbound.http_identity is not None and not inbound.topic.startswith(PREFIX + "/")


def _sender(inbound: Inbound) -> tuple[str | None, tuple[str, str] | None]:
    """(sending device, (sender kind, leaf) of one of our uplink topics), from one split."""
    if _by_login(inbound):
        return inbound.http_identity[0], None
    parts = inbound.topic.split("/", 4)
    if parts[0] == OWNTRACKS_PREFIX:
        return (parts[1] if len(parts) > 2 and parts[1] else None), None
    if len(parts) > 4 and parts[0] == _PREFIX_ROOT and parts[1] == _PREFIX_VERSION:
        return (parts[3] or None), (parts[2], parts[4])
    return None, None


def sending_device(inbound: Inbound) -> str | None:
    """The device a message comes from, from what the broker (or the HTTP login) authenticated:
    the terminal or gateway id of our topics, the OwnTracks user. None for any other topic."""
    return _sender(inbound)[0]


class _Stop(Exception):
    def __init__(self, rejection: Rejection) -> None:
        self.rejection = rejection


def check_rate(inbound: Inbound, limiter: RateLimiter | None, budgets: Budgets | None = None) -> None:
    device, leaf = _sender(inbound)
    if device is None:
        return
    now = inbound.received_at.timestamp()
    if limiter is not None and not limiter.allow(device, now):
        raise _Stop(Rejection(RATE_LIMITED, f"device {device!r} sends faster than {limiter.rate_per_s:g} "
                                            f"messages/s (bursts of {limiter.burst:g}), set by "
                                            "GCC_INGEST_DEVICE_RATE_PER_S and GCC_INGEST_DEVICE_BURST"))
    why = budgets.refusal(*leaf, device, now) if budgets is not None and leaf is not None else None
    if why is not None:
        raise _Stop(Rejection(RATE_LIMITED, why))


def check_size(inbound: Inbound) -> None:
    if len(inbound.payload) > MAX_PAYLOAD_BYTES:
        raise _Stop(Rejection(PAYLOAD_TOO_LARGE, f"{len(inbound.payload)} bytes, more than the limit of "
                                                 f"{MAX_PAYLOAD_BYTES}"))


def decode_inbound(inbound: Inbound, reg: Registry | None = None) -> list[Message]:
    try:
        if inbound.http_identity is not None and inbound.topic.startswith(osmand.PREFIX + "/"):
            decoder = osmand.decode_json if inbound.topic.endswith("/json") else osmand.decode_form
            return decoder(inbound.payload, inbound.http_identity[0], inbound.received_at)
        if _by_login(inbound):
            user, device = inbound.http_identity
            return owntracks.decode_http(inbound.payload, user, device, inbound.received_at)
        names = reg.sensor_names if reg is not None else senml.NO_NAMES
        return [stamp_will(m, inbound) for m in decode(inbound.topic, inbound.payload, inbound.received_at, names)]
    except DecodeError as exc:
        raise _Stop(Rejection(exc.reason, exc.detail)) from None


def stamp_will(msg: Message, inbound: Inbound) -> Message:
    """A last will is written when its terminal or gateway connects and published by the broker
    when the connection dies: its own time says when the device connected, not when it went
    offline. So it is timed at receipt (as OwnTracks' lwt is), unless the broker delivers it as a
    retained message (an old one, on subscribing: then its own time, so a redelivery is not news)."""
    if isinstance(msg, (TerminalStatus, GatewayStatus)) and msg.will and not inbound.retain:
        return msg.model_copy(update={"time": inbound.received_at})
    return msg


def check_time(msg: Message, received_at: datetime) -> None:
    if msg.time - received_at > MAX_FUTURE:
        raise _Stop(Rejection("timestamp_future", f"time {msg.time.isoformat()} is "
                              f"{(msg.time - received_at).total_seconds():.0f} s ahead of the server clock"))
    if received_at - msg.time > MAX_PAST:
        raise _Stop(Rejection("timestamp_past", f"time {msg.time.isoformat()} is older than {MAX_PAST.days} days"))


def _unknown(device_id: str, what: str, reg: Registry) -> _Stop:
    """Unknown, or retired (still sending, or its queued messages arriving after it was retired)."""
    retired = reg.retired.get(device_id)
    if retired is not None:
        return _Stop(Rejection(RETIRED_DEVICE, f"{device_id!r} is retired ({retired})"))
    return _Stop(Rejection(UNKNOWN_DEVICE, what))


def check_device(msg: Message, reg: Registry) -> None:
    sender = kind_of(msg).sender
    if sender == "terminal" and msg.terminal_id not in reg.members:
        raise _unknown(msg.terminal_id, f"terminal {msg.terminal_id!r} is not registered to any member", reg)
    if sender == "sensor":
        sensor = reg.sensors.get(msg.sensor_id)
        if sensor is None:
            raise _unknown(msg.sensor_id, f"sensor {msg.sensor_id!r} is not registered", reg)
        if msg.gateway_id is not None and sensor.gateway_id != msg.gateway_id:
            raise _Stop(Rejection(UNKNOWN_DEVICE, f"sensor {msg.sensor_id!r} belongs to gateway "
                                                    f"{sensor.gateway_id!r}, not {msg.gateway_id!r}"))
    if sender == "gateway" and msg.gateway_id not in reg.gateways:
        raise _unknown(msg.gateway_id, f"gateway {msg.gateway_id!r} is not registered", reg)


def validate(inbound: Inbound, reg: Registry, limiter: RateLimiter | None = None,
             budgets: Budgets | None = None) -> tuple[Outcome, list[Message]]:
    """The VALIDATION stages for one message: the messages to enrich, or a rejection. One bad
    record refuses the whole message, as it was sent."""
    outcome = Outcome(inbound)
    try:
        check_rate(inbound, limiter, budgets)
        check_size(inbound)
        messages = decode_inbound(inbound, reg)
        for msg in messages:
            check_time(msg, inbound.received_at)
            check_device(msg, reg)
    except _Stop as stop:
        outcome.rejection = stop.rejection
        return outcome, []
    except Exception as exc:  # a bug, not bad input: this message alone is dead-lettered
        outcome.rejection = poison(exc, "validation")
        return outcome, []
    return outcome, messages


_UNSET = object()


def _position(msg: Message) -> tuple[float, float] | None:
    if kind_of(msg).located and msg.lat is not None and msg.lon is not None:
        return msg.lon, msg.lat
    return None


def enrich(msg: Message, reg: Registry, grid=_UNSET, received_at: datetime | None = None) -> Enriched | Rejection:
    """Tag a message with its grid (from its own position, or from its device's registration),
    member, building and the member's own grid. `grid` is the already-located grid of a
    positioned message (batch lookups), if known."""
    kind = kind_of(msg)
    if kind.sender == "terminal":
        member = reg.members[msg.terminal_id]
        if not kind.located:
            grid = member.grid_code
        else:
            position = _position(msg)
            if grid is _UNSET:
                grid = reg.grids.locate(*position) if position else None
            if grid is None and position is not None and not kind.outside_city_ok:
                return Rejection("outside_city", f"position lat={msg.lat} lon={msg.lon} lies outside every grid")
        return Enriched(msg, grid, member.member_id, home_grid_code=member.grid_code, received_at=received_at)
    if kind.sender == "sensor":
        sensor = reg.sensors[msg.sensor_id]
        return Enriched(msg, sensor.grid_code, building_id=sensor.building_id, place=(sensor.lon, sensor.lat),
                        received_at=received_at)
    gateway = reg.gateways[msg.gateway_id]
    return Enriched(msg, gateway.grid_code, building_id=gateway.building_id, received_at=received_at)


def _finish(outcome: Outcome, messages: list[Message], reg: Registry, grids: list) -> Outcome:
    for msg, grid in zip(messages, grids, strict=True):
        try:
            result = enrich(msg, reg, grid, outcome.inbound.received_at)
        except Exception as exc:  # a bug: contained, as in validate
            result = poison(exc, "enrich")
        if isinstance(result, Rejection):
            outcome.accepted.clear()
            outcome.rejection = result
            return outcome
        outcome.accepted.append(result)
    return outcome


def process(inbound: Inbound, reg: Registry, limiter: RateLimiter | None = None,
            budgets: Budgets | None = None) -> Outcome:
    """Run one message through the chain (a batch of one). Never raises: bad input is a
    Rejection, and so is a message our own code fails on (`poison`)."""
    return process_batch([inbound], reg, limiter, budgets)[0]


def _locate_all(validated: list[tuple[Outcome, list[Message]]], reg: Registry) -> list[list]:
    """The grid of every positioned message of the batch, in one vectorised lookup. Should that
    raise, every message is located on its own in enrich (where a failure is its own)."""
    try:
        positions = [p for _, messages in validated for m in messages if (p := _position(m)) is not None]
        located = iter(reg.grids.locate_many([p[0] for p in positions], [p[1] for p in positions])
                       if positions else [])
        return [[next(located) if _position(m) is not None else _UNSET for m in messages]
                for _, messages in validated]
    except Exception:
        return [[_UNSET] * len(messages) for _, messages in validated]


def process_batch(inbounds: list[Inbound], reg: Registry, limiter: RateLimiter | None = None,
                  budgets: Budgets | None = None) -> list[Outcome]:
    """The same chain for a batch, with one vectorised point → grid lookup for all positions.
    The rate limits see the messages in the order they arrived."""
    validated = [validate(inbound, reg, limiter, budgets) for inbound in inbounds]
    return [_finish(outcome, messages, reg, grids)
            for (outcome, messages), grids in zip(validated, _locate_all(validated, reg), strict=True)]


# --- forged clears: the one check across devices (the worker asks the database, Store.raised_by) ----
def clears(outcomes: list[Outcome]) -> set[str]:
    """The alarm ids of the batch's accepted `cleared` alarms: those the database is asked about."""
    return {e.message.alarm_id for o in outcomes for e in o.accepted
            if isinstance(e.message, DeviceAlarm) and e.message.state == "cleared"}


def refuse_forged_clears(outcomes: list[Outcome], raised_by: dict[str, set[str]]) -> int:
    """Refuse (foreign_id, naming both sensors) each `cleared` alarm whose own sensor never raised
    that alarm id, neither before (`raised_by`: alarm id -> the sensors with a stored raise) nor
    earlier in this batch, while another sensor has raised it: a gateway clearing another
    building's alarm. Nothing else is refused for an id another device uses too (identity is
    (device, id) everywhere, so that could hide nothing). Returns how many were refused."""
    raised_here: dict[str, set[str]] = {}
    refused = 0
    for outcome in outcomes:
        for enriched in list(outcome.accepted):
            alarm = enriched.message
            if not isinstance(alarm, DeviceAlarm):
                continue
            raisers = raised_by.get(alarm.alarm_id, set()) | raised_here.get(alarm.alarm_id, set())
            if alarm.state == "raised":
                raised_here.setdefault(alarm.alarm_id, set()).add(alarm.sensor_id)
            elif raisers and alarm.sensor_id not in raisers:
                others = ", ".join(repr(s) for s in sorted(raisers))
                outcome.accepted.clear()
                outcome.rejection = Rejection(FOREIGN_ID, f"alarm {alarm.alarm_id!r} cleared by sensor "
                                                          f"{alarm.sensor_id!r}, which never raised it; it was "
                                                          f"raised by sensor {others}")
                refused += 1
                break
    return refused


def digest_refusals(outcomes: list[Outcome], digest: RefusalDigest) -> int:
    """Per device, only the first `rate_limited` refusal of a window becomes a dead letter (with
    the count of the previous window's others in its detail); the rest are acknowledged and only
    counted (`counted_only`). Returns how many were counted only."""
    quiet = 0
    for outcome in outcomes:
        rejection = outcome.rejection
        if rejection is None or rejection.reason != RATE_LIMITED:
            continue
        device = sending_device(outcome.inbound) or outcome.inbound.topic
        admitted = digest.admit(device, rejection, outcome.inbound.received_at.timestamp())
        if admitted is None:
            outcome.counted_only = True
            quiet += 1
        else:
            outcome.rejection = admitted
    return quiet

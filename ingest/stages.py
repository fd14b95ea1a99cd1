"""The ingest chain's pure stages. Per message, in order:

    check_rate → check_size → decode → check_time → check_device   (VALIDATION, each may stop it)
    → enrich (grid from the position, one vectorised lookup per batch; member, building, home grid)

A stage passes the message on or stops it with a `Rejection` (a reason code and a specific
detail) that becomes a dead letter. What each message type needs (sender, position, table) comes
from its entry in `ingest.kinds`. Storing, live state, the live bus and the acknowledgement come
after, per batch (worker.py).

A stage that raises (a bug, not bad input) is contained: that message alone becomes a dead letter
with the reason `poison` (the exception's type, place and message); the rest of the batch goes on.
`check_rate` is the one stage with state: the worker's `RateLimiter`, a token bucket per sending
device, fed with each message's own reception time (no clock of its own).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from ingest.kinds import kind_of
from ingest.model import FOREIGN_ID, PAYLOAD_TOO_LARGE, RATE_LIMITED, Enriched, Inbound, Outcome, Rejection, poison
from telemetry.city import City
from telemetry.decoders import DecodeError, decode, owntracks
from telemetry.gridindex import GridIndex
from telemetry.messages import Message, TerminalStatus
from telemetry.topics import OWNTRACKS_PREFIX, PREFIX

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_FUTURE = timedelta(minutes=5)     # device clocks drift; more than this is a broken clock
MAX_PAST = timedelta(days=7)          # terminals buffer offline; older than this is refused


class Registry:
    """What the chain knows about devices: the city's reference data, indexed."""

    def __init__(self, city: City) -> None:
        self.city = city
        self.grids = GridIndex(city.grids)
        self.members = city.member_by_terminal
        self.sensors = city.sensor_by_id
        self.gateways = city.gateway_by_id


class RateLimiter:
    """A token bucket per sending device: `rate_per_s` messages a second on average, bursts of up
    to `burst`. Pure: no clock of its own (`allow` is told the time), no I/O. Devices whose bucket
    has filled up again are forgotten now and then, so memory follows the devices that are busy."""

    PRUNE_EVERY_S = 60.0

    def __init__(self, rate_per_s: float, burst: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"a rate limit needs rate_per_s > 0 and burst >= 1, got {rate_per_s}, {burst}")
        self.rate_per_s, self.burst = rate_per_s, burst
        self._buckets: dict[str, tuple[float, float]] = {}   # device -> (tokens, at)
        self._pruned_at: float | None = None

    def allow(self, device: str, now: float) -> bool:
        """Take one token from the device's bucket at time `now` (seconds); False when it is empty.
        A clock that went back refills nothing."""
        tokens, at = self._buckets.get(device, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate_per_s)
        allowed = tokens >= 1
        self._buckets[device] = (tokens - 1 if allowed else tokens, max(at, now))
        self._prune(now)
        return allowed

    def _prune(self, now: float) -> None:
        if self._pruned_at is None:
            self._pruned_at = now
        if now - self._pruned_at < self.PRUNE_EVERY_S:
            return
        self._pruned_at = now
        full = [d for d, (tokens, at) in self._buckets.items() if tokens + (now - at) * self.rate_per_s >= self.burst]
        for device in full:
            del self._buckets[device]

    def __len__(self) -> int:
        return len(self._buckets)


def sending_device(inbound: Inbound) -> str | None:
    """The device a message comes from, from what the broker (or the HTTP login) authenticated:
    the terminal or gateway id of our topics, the OwnTracks user. None for any other topic."""
    if inbound.http_identity is not None:
        return inbound.http_identity[0]
    parts = inbound.topic.split("/", 4)
    if parts[0] == OWNTRACKS_PREFIX:
        return parts[1] if len(parts) > 2 and parts[1] else None
    if len(parts) > 4 and f"{parts[0]}/{parts[1]}" == PREFIX and parts[3]:
        return parts[3]
    return None


class _Stop(Exception):
    def __init__(self, rejection: Rejection) -> None:
        self.rejection = rejection


def check_rate(inbound: Inbound, limiter: RateLimiter | None) -> None:
    if limiter is None:
        return
    device = sending_device(inbound)
    if device is not None and not limiter.allow(device, inbound.received_at.timestamp()):
        raise _Stop(Rejection(RATE_LIMITED, f"device {device!r} sends faster than {limiter.rate_per_s:g} "
                                            f"messages/s (bursts of {limiter.burst:g})"))


def check_size(inbound: Inbound) -> None:
    if len(inbound.payload) > MAX_PAYLOAD_BYTES:
        raise _Stop(Rejection(PAYLOAD_TOO_LARGE, f"{len(inbound.payload)} bytes, more than the limit of "
                                                 f"{MAX_PAYLOAD_BYTES}"))


def decode_inbound(inbound: Inbound) -> list[Message]:
    try:
        if inbound.http_identity is not None:
            user, device = inbound.http_identity
            return owntracks.decode_http(inbound.payload, user, device, inbound.received_at)
        return [stamp_will(m, inbound) for m in decode(inbound.topic, inbound.payload, inbound.received_at)]
    except DecodeError as exc:
        raise _Stop(Rejection(exc.reason, exc.detail)) from None


def stamp_will(msg: Message, inbound: Inbound) -> Message:
    """A last will is written when its terminal connects and published by the broker when the
    connection dies: its own time says when the terminal connected, not when it went offline. So
    it is timed at receipt (as OwnTracks' lwt is), unless the broker delivers it as a retained
    message (an old one, on subscribing: then its own time, so a redelivery is not news)."""
    if isinstance(msg, TerminalStatus) and msg.will and not inbound.retain:
        return msg.model_copy(update={"time": inbound.received_at})
    return msg


def check_time(msg: Message, received_at: datetime) -> None:
    if msg.time - received_at > MAX_FUTURE:
        raise _Stop(Rejection("timestamp_future", f"time {msg.time.isoformat()} is "
                              f"{(msg.time - received_at).total_seconds():.0f} s ahead of the server clock"))
    if received_at - msg.time > MAX_PAST:
        raise _Stop(Rejection("timestamp_past", f"time {msg.time.isoformat()} is older than {MAX_PAST.days} days"))


def check_device(msg: Message, reg: Registry) -> None:
    sender = kind_of(msg).sender
    if sender == "terminal" and msg.terminal_id not in reg.members:
        raise _Stop(Rejection("unknown_device", f"terminal {msg.terminal_id!r} is not registered to any member"))
    if sender == "sensor":
        sensor = reg.sensors.get(msg.sensor_id)
        if sensor is None:
            raise _Stop(Rejection("unknown_device", f"sensor {msg.sensor_id!r} is not registered"))
        if msg.gateway_id is not None and sensor.gateway_id != msg.gateway_id:
            raise _Stop(Rejection("unknown_device", f"sensor {msg.sensor_id!r} belongs to gateway "
                                                    f"{sensor.gateway_id!r}, not {msg.gateway_id!r}"))
    if sender == "gateway" and msg.gateway_id not in reg.gateways:
        raise _Stop(Rejection("unknown_device", f"gateway {msg.gateway_id!r} is not registered"))


def validate(inbound: Inbound, reg: Registry, limiter: RateLimiter | None = None) -> tuple[Outcome, list[Message]]:
    """The VALIDATION stages for one message: the messages to enrich, or a rejection. One bad
    record refuses the whole message, as it was sent."""
    outcome = Outcome(inbound)
    try:
        check_rate(inbound, limiter)
        check_size(inbound)
        messages = decode_inbound(inbound)
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


def process(inbound: Inbound, reg: Registry, limiter: RateLimiter | None = None) -> Outcome:
    """Run one message through the chain. Never raises: bad input is a Rejection, and so is a
    message our own code fails on (`poison`)."""
    outcome, messages = validate(inbound, reg, limiter)
    return _finish(outcome, messages, reg, [_UNSET] * len(messages))


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


def process_batch(inbounds: list[Inbound], reg: Registry, limiter: RateLimiter | None = None) -> list[Outcome]:
    """The same chain for a batch, with one vectorised point → grid lookup for all positions.
    The rate limiter sees the messages in the order they arrived."""
    validated = [validate(inbound, reg, limiter) for inbound in inbounds]
    return [_finish(outcome, messages, reg, grids)
            for (outcome, messages), grids in zip(validated, _locate_all(validated, reg), strict=True)]


# --- ids belong to their sender: the claim is the database's (store.claim_ids); these are pure ----
_ID_OWNER_WORD = {"alarm": "sensor", "report": "terminal", "task": "terminal"}


def id_claims(outcomes: list[Outcome]) -> list[tuple[int, tuple[str, str, str]]]:
    """(index of the outcome, (kind, id, device)) for every accepted message whose id must belong
    to its sender."""
    claims = []
    for index, outcome in enumerate(outcomes):
        for enriched in outcome.accepted:
            owned = kind_of(enriched.message).owned_id
            if owned is not None:
                claims.append((index, owned(enriched.message)))
    return claims


def refuse_foreign_ids(outcomes: list[Outcome], claims: list[tuple[int, tuple[str, str, str]]],
                       owners: dict[tuple[str, str], str]) -> int:
    """Refuse each message whose id another device owns (foreign_id, naming both); returns how many."""
    refused = 0
    for index, (kind, id_, device) in claims:
        owner = owners.get((kind, id_), device)
        outcome = outcomes[index]
        if owner != device and outcome.rejection is None:
            word = _ID_OWNER_WORD[kind]
            outcome.accepted.clear()
            outcome.rejection = Rejection(FOREIGN_ID, f"{kind} id {id_!r} belongs to {word} {owner!r}, "
                                                      f"not to {word} {device!r} that sent it")
            refused += 1
    return refused

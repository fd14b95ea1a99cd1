"""What travels through the ingest chain: the inbound message as delivered, a rejection, the
enriched message, and one message's outcome. Plain immutable values; no I/O."""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from telemetry.messages import Message


@dataclass(frozen=True)
class Inbound:
    """One message as it arrived (immutable): its topic, bytes and when we received it."""
    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_at: datetime
    dup: bool = False
    http_identity: tuple[str, str | None] | None = None  # HTTP: (OwnTracks user, X-Limit-D device) or (OsmAnd id, None)


class Receipt(Protocol):
    """How the sender learns that its message was taken: an MQTT acknowledgement, or the answer to
    a waiting HTTP request. Settled once, only after the message's batch is committed (or the
    message is refused: then with its rejection)."""

    def settle(self, rejection: Rejection | None) -> bool:
        """Tell the sender; True when the sender was told (an MQTT ack can no longer be sent on a
        connection that has gone: the broker then delivers the message again)."""


@dataclass(frozen=True)
class Delivery:
    """A message and the receipt its sender waits for."""
    inbound: Inbound
    receipt: Receipt


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str


# The pipeline's own reason codes (the decoders' are telemetry.decoders.REASONS; docs/WIRE_FORMAT.md
# lists both). Each is a dead letter's `reason` and a label of gcc_ingest_dead_letters_total.
PAYLOAD_TOO_LARGE = "payload_too_large"
RATE_LIMITED = "rate_limited"       # more than its device's rate or budget allows (ingest.limits)
DB_REJECTED = "db_rejected"         # the database refused its rows (SQLSTATE class 22 or 23)
POISON = "poison"                   # processing it raised an unexpected exception (a bug), N times
UNKNOWN_DEVICE = "unknown_device"   # its sender is not in the registry (stages)
RETIRED_DEVICE = "retired_device"   # sent by (or queued for) a device the registry has retired (stages)
FOREIGN_ID = "foreign_id"           # a clear of an alarm id its sensor never raised, another did (stages)
_DETAIL_MAX = 500


def poison(exc: BaseException, context: str) -> Rejection:
    """The dead letter's reason for a message that made our own code raise: the exception's type,
    where it was raised, and its message (shortened)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].name} ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    detail = f"{context}: {type(exc).__name__}{where}: {exc}"
    return Rejection(POISON, detail if len(detail) <= _DETAIL_MAX else detail[:_DETAIL_MAX - 3] + "...")


@dataclass(frozen=True)
class Enriched:
    """A decoded message with what the chain learned about it."""
    message: Message
    grid_code: str | None = None
    member_id: str | None = None
    building_id: str | None = None
    home_grid_code: str | None = None          # a member's own grid (a fix may lie elsewhere)
    place: tuple[float, float] | None = None   # a sensor's (lon, lat), from the reference data
    received_at: datetime | None = None        # when its message arrived (orders the live state)


@dataclass
class Outcome:
    inbound: Inbound
    accepted: list[Enriched] = field(default_factory=list)
    rejection: Rejection | None = None
    counted_only: bool = False     # refused, acknowledged and counted without a dead letter of its own

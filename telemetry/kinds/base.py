"""What a message kind declares: the one place that says everything about a kind of message.

A kind's module (one per kind, in this package) registers one `Kind`: its model (what the
decoders produce), where it arrives in our JSON (its topic leaf and the payload's fields), whose
registration it is checked against, its table (columns, natural key, the row it becomes, how long
it is kept), and its live projection (the change the screens hear of, if any). The ingest, the
database roles, the live writer and the screens' feeds read these declarations; none of them lists
the kinds again.

`LiveChange` is the base of every change the live bus carries (telemetry.live): a kind with a live
projection declares its change type next to its model.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol

from telemetry.fields import WireMessage

Sender = Literal["terminal", "sensor", "gateway"]
Device = Literal["terminal", "gateway"]     # whose topic a kind arrives on: gcc/v1/<device>/<device id>/<leaf>


class LiveChange:
    """What every change on the live bus says besides its data: its kind, the field naming the org
    unit whose screens see it (a member's changes go to their own grid, whatever grid they walk
    through; everything else to where it happened), and the fields under which changes coalesce
    (none: every change counts; some: only the newest under them matters)."""
    __slots__ = ()
    KIND: ClassVar[str]
    ROUTE_FIELD: ClassVar[str] = "grid_code"
    COALESCE_FIELDS: ClassVar[tuple[str, ...]] = ()

    @property
    def route_code(self) -> str | None:
        return getattr(self, self.ROUTE_FIELD)

    @property
    def coalesce_key(self):
        if not self.COALESCE_FIELDS:
            return None
        values = tuple(getattr(self, name) for name in self.COALESCE_FIELDS)
        return values[0] if len(values) == 1 else values


class Tagged(Protocol):
    """A decoded message with what the ingest chain learned about it (ingest.model.Enriched): what a
    kind's row and live projection are built from."""
    message: Any
    grid_code: str | None
    member_id: str | None
    building_id: str | None
    home_grid_code: str | None
    place: tuple[float, float] | None
    received_at: datetime | None


@dataclass(frozen=True)
class JsonTopic:
    """Where a kind arrives in our own JSON (docs/WIRE_FORMAT.md) and how its payload becomes the model:
    the payload's fields besides "ts" (any other is refused), and the fields the decoder sets itself
    (the device's id, from the topic the broker authenticated, is always one of them)."""
    device: Device
    leaf: str
    fields: frozenset[str]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    records: str | None = None     # the payload carries a list of records under this name, each one
                                   # message (its own "ts", else the payload's, else the arrival time)
    id_field: str = field(init=False)   # the model's field the device's id goes to: terminal_id, gateway_id

    def __post_init__(self) -> None:
        object.__setattr__(self, "id_field", f"{self.device}_id")


@dataclass(frozen=True)
class Kind:
    name: str
    model: type[WireMessage]
    sender: Sender                   # whose registration the message is checked against
    table: str
    columns: tuple[str, ...]
    natural_key: tuple[str, ...]     # the table's unique key: a redelivery is never a second row
    row: Callable[[Tagged, datetime], tuple]   # (the message as tagged, when it was received) -> row
    retention_days: int              # how long its rows are kept (GCC_RETENTION_<TABLE>_DAYS overrides)
    json: JsonTopic | None = None    # None: it arrives in other formats only (OwnTracks, SenML)
    change: Callable[[Tagged], LiveChange] | None = None   # the live projection; None: not live
    change_type: type[LiveChange] | None = None             # ... and the type of change it makes
    located: bool = False            # carries its own position: its grid is looked up from it
    outside_city_ok: bool = False    # a position outside every grid is still accepted

    def __post_init__(self) -> None:
        if (self.change is None) != (self.change_type is None):
            raise ValueError(f"kind {self.name}: a live projection needs its change type, and the other way round")
        if not set(self.natural_key) <= set(self.columns):
            raise ValueError(f"kind {self.name}: its natural key {self.natural_key} is not among its columns")


def live_time(item: Tagged) -> float:
    """The time that orders the live state: the message's own, but never later than its arrival.
    A device clock ahead within the allowed skew (ingest.stages.MAX_FUTURE) must not make the
    device's next, correctly timed messages look older and be ignored until its fake time has passed."""
    t = item.message.time
    return min(t, item.received_at).timestamp() if item.received_at is not None else t.timestamp()

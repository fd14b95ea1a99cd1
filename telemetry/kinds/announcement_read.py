"""A member has read an announcement: the receipt their terminal sends once it is shown."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from telemetry.fields import Id, UtcTime, WireMessage
from telemetry.kinds import JsonTopic, Kind, LiveChange, Tagged, live_time, register


class AnnouncementRead(WireMessage):
    """A member has read an announcement (the receipt their terminal sends once it is shown)."""
    announcement_id: Annotated[int, Field(gt=0, lt=2**63)]
    terminal_id: Id
    time: UtcTime


@dataclass(frozen=True, slots=True)
class ReadChange(LiveChange):
    """A member has read an announcement (their terminal's receipt): the announcement pages count
    it (from the database: only a recipient's receipt counts)."""
    KIND = "read"
    ROUTE_FIELD = "home_grid_code"
    announcement_id: int
    terminal_id: str
    home_grid_code: str
    t: float


def _change(item: Tagged) -> ReadChange:
    m: AnnouncementRead = item.message
    return ReadChange(m.announcement_id, m.terminal_id, item.home_grid_code, live_time(item))


KIND = register(Kind(
    "announcement_read", AnnouncementRead, "terminal", "announcement_reads",
    ("time", "announcement_id", "terminal_id", "received_at"),
    ("terminal_id", "announcement_id", "time"),
    lambda e, at: (e.message.time, e.message.announcement_id, e.message.terminal_id, at),
    retention_days=400,            # a year of who read what
    json=JsonTopic("terminal", "announcement/read", frozenset({"announcement_id"})),
    change=_change, change_type=ReadChange))

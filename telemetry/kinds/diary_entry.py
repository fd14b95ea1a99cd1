"""A people's-feelings diary entry (民情日记), from a member's terminal."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from telemetry.fields import Id, Text, UtcTime, WireMessage
from telemetry.kinds import JsonTopic, Kind, register


class DiaryEntry(WireMessage):
    """A people's-feelings diary entry (民情日记): what a member heard from residents on patrol, in a
    few sentences, with what it is about (core.catalogue.DIARY_CATEGORIES). Counted in the
    assessment; a leader may rate its quality."""
    entry_id: Id
    terminal_id: Id
    time: UtcTime
    category: Literal["livelihood", "safety", "environment", "dispute", "suggestion", "other"]
    text: Annotated[Text, Field(min_length=1, max_length=500)]


KIND = register(Kind(
    "diary_entry", DiaryEntry, "terminal", "diary_entries",
    ("time", "entry_id", "terminal_id", "member_id", "grid_code", "category", "text", "received_at"),
    ("terminal_id", "entry_id", "time"),
    lambda e, at: (e.message.time, e.message.entry_id, e.message.terminal_id, e.member_id, e.home_grid_code,
                   e.message.category, e.message.text, at),
    retention_days=1825,           # assessed, like the cases
    json=JsonTopic("terminal", "diary", frozenset({"entry_id", "category", "text"}))))

"""A member's work on a case, from their terminal: accept, feedback, verify, … (the cases engine
takes it from the table, through the case inbox)."""
from __future__ import annotations

from typing import Annotated, Literal

import orjson
from pydantic import Field

from telemetry.fields import Id, Text, UtcTime, WireMessage
from telemetry.kinds import JsonTopic, Kind, register


class CaseUpdate(WireMessage):
    """A member's work on a case, from their terminal (the handheld's incident handling and
    verification). Whether this terminal may do it to this case is the cases engine's to decide:
    a refusal is audited and changes nothing."""
    case_id: Id
    terminal_id: Id
    time: UtcTime
    action: Literal["accept", "reject", "start", "feedback", "verify_pass", "verify_fail", "extension"]
    note: Annotated[Text, Field(max_length=2000)] | None = None
    reason: Annotated[Text, Field(max_length=500)] | None = None
    photo_refs: Annotated[list[Annotated[Text, Field(min_length=1, max_length=200)]], Field(max_length=10)] = []
    extension: Annotated[str, Field(pattern=r"^\d+(\.\d+)?(m|h|wh|wd)$")] | None = None   # e.g. "1wd"


KIND = register(Kind(
    "case_update", CaseUpdate, "terminal", "case_updates",
    ("time", "case_id", "terminal_id", "action", "note", "reason", "photo_refs", "extension", "received_at"),
    ("terminal_id", "case_id", "action", "time"),
    lambda e, at: (e.message.time, e.message.case_id, e.message.terminal_id, e.message.action, e.message.note,
                   e.message.reason, orjson.dumps(e.message.photo_refs).decode(), e.message.extension, at),
    retention_days=1825,           # how a case was handled, as long as the case
    json=JsonTopic("terminal", "case", frozenset({"case_id", "action", "note", "reason", "photo_refs", "extension"}))))

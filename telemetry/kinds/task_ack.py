"""A terminal's answer to a dispatched task (gcc/v1/terminal/<id>/task/ack)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from telemetry.fields import Id, Text, UtcTime, WireMessage
from telemetry.kinds import JsonTopic, Kind, LiveChange, Tagged, live_time, register


class TaskAck(WireMessage):
    task_id: Id
    terminal_id: Id
    time: UtcTime
    action: Literal["accepted", "rejected", "arrived", "done"]
    note: Annotated[Text, Field(max_length=500)] | None = None


@dataclass(frozen=True, slots=True)
class TaskAckChange(LiveChange):
    KIND = "task_ack"
    ROUTE_FIELD = "home_grid_code"
    task_id: str
    terminal_id: str
    member_id: str
    home_grid_code: str
    t: float
    action: str                    # accepted / rejected / arrived / done
    note: str | None = None


def _change(item: Tagged) -> TaskAckChange:
    m: TaskAck = item.message
    return TaskAckChange(m.task_id, m.terminal_id, item.member_id, item.home_grid_code, live_time(item), m.action,
                         m.note)


KIND = register(Kind(
    "task_ack", TaskAck, "terminal", "task_acks",
    ("time", "task_id", "terminal_id", "action", "note", "received_at"),
    ("terminal_id", "task_id", "action", "time"),
    lambda e, at: (e.message.time, e.message.task_id, e.message.terminal_id, e.message.action, e.message.note, at),
    retention_days=1825,           # how a case was handled, as long as the case
    json=JsonTopic("terminal", "task/ack", frozenset({"task_id", "action", "note"})),
    change=_change, change_type=TaskAckChange))

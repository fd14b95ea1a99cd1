"""A check on site (紧急核实, the handheld's emergency verification): a member asked to check an alarm
or a neighbour's SOS goes to look and says what they found — it is real (`confirmed`), it is a
false alarm, or they need help — with a note and photos, from their terminal
(gcc/v1/terminal/<id>/alarm/check).

What was checked: the alarm (`sensor_id` and `alarm_id`, as everywhere), or the case the member was
asked about (`case_id`: the check notice's, the only name an SOS has), or both. The same kind
answers both, because both are one fact (what a member found when asked to check), kept in one
table and taken to the case by one path: the row's trigger hands it to the cases engine's inbox
(migration 0031), which records it on the case (cases.intake: a `check` event) when that terminal
was asked. Stored for the alarm's and the case's record and the assessment; the live bus carries it
to the screens of the member's grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, model_validator

from telemetry.fields import Id, Text, UtcTime, WireMessage
from telemetry.kinds import JsonTopic, Kind, LiveChange, Tagged, live_time, register
from telemetry.kinds.incident_report import MAX_PHOTOS, PHOTO_REF_MAX, pg_text_array

Outcome = Literal["confirmed", "false_alarm", "need_help"]
OUTCOMES: tuple[str, ...] = Outcome.__args__          # the one list (cases.machine checks against it)


class AlarmCheck(WireMessage):
    """What a member found: the alarm is (sensor_id, alarm_id), the case is case_id; at least one of
    the two, and a sensor only with its alarm. `photo_refs` are up to 4 refs of photos uploaded on
    their own (`sha256:<hex>` from the handheld); `photo_ref`, one ref, stays accepted."""
    terminal_id: Id
    time: UtcTime
    outcome: Outcome
    case_id: Id | None = None
    sensor_id: Id | None = None
    alarm_id: Id | None = None
    note: Annotated[Text, Field(max_length=500)] | None = None
    photo_ref: Annotated[Text, Field(max_length=512)] | None = None
    photo_refs: Annotated[list[Annotated[Text, Field(min_length=1, max_length=PHOTO_REF_MAX)]],
                          Field(max_length=MAX_PHOTOS)] = []

    @model_validator(mode="after")
    def _names_what_was_checked(self) -> AlarmCheck:
        if (self.sensor_id is None) != (self.alarm_id is None):
            raise ValueError("an alarm is named by both sensor_id and alarm_id, or neither")
        if self.case_id is None and self.sensor_id is None:
            raise ValueError("a check names what was checked: case_id, or sensor_id and alarm_id (or all three)")
        return self

    @property
    def photos(self) -> tuple[str, ...]:
        """Every photo ref it names, `photo_ref` first, each once."""
        return tuple(dict.fromkeys(([self.photo_ref] if self.photo_ref else []) + list(self.photo_refs)))


@dataclass(frozen=True, slots=True)
class AlarmCheckChange(LiveChange):
    KIND = "alarm_check"
    ROUTE_FIELD = "home_grid_code"
    sensor_id: str | None
    alarm_id: str | None
    terminal_id: str
    member_id: str
    home_grid_code: str
    t: float
    outcome: str
    note: str | None = None
    case_id: str | None = None


def _change(item: Tagged) -> AlarmCheckChange:
    m: AlarmCheck = item.message
    return AlarmCheckChange(m.sensor_id, m.alarm_id, m.terminal_id, item.member_id, item.home_grid_code,
                            live_time(item), m.outcome, m.note, m.case_id)


KIND = register(Kind(
    "alarm_check", AlarmCheck, "terminal", "alarm_checks",
    ("time", "terminal_id", "member_id", "grid_code", "case_id", "sensor_id", "alarm_id", "outcome", "note",
     "photo_ref", "photo_refs", "received_at"),
    ("terminal_id", "case_id", "sensor_id", "alarm_id", "time"),
    lambda e, at: (e.message.time, e.message.terminal_id, e.member_id, e.home_grid_code, e.message.case_id,
                   e.message.sensor_id, e.message.alarm_id, e.message.outcome, e.message.note, e.message.photo_ref,
                   pg_text_array(e.message.photo_refs), at),
    retention_days=1825,           # an alarm's and a case's record, kept as they are
    json=JsonTopic("terminal", "alarm/check", frozenset({"case_id", "sensor_id", "alarm_id", "outcome", "note",
                                                         "photo_ref", "photo_refs"})),
    change=_change, change_type=AlarmCheckChange))

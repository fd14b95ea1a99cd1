"""The typed changes the live bus carries (see telemetry.live): each message kind's own (declared in
its module, telemetry/kinds/), and those made elsewhere, here: a person's acknowledgement of an
alarm (the dashboard) and a case as it is after a change (the cases engine)."""
from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, fields

from telemetry import kinds
from telemetry.kinds import LiveChange as _Change
from telemetry.kinds.alarm import AlarmChange
from telemetry.kinds.announcement_read import ReadChange
from telemetry.kinds.fix import FixChange
from telemetry.kinds.gateway_status import GatewayChange
from telemetry.kinds.incident_report import ReportChange
from telemetry.kinds.reading import ReadingChange
from telemetry.kinds.task_ack import TaskAckChange
from telemetry.kinds.terminal_status import StatusChange

__all__ = ["CHANGE_TYPES", "AlarmAckChange", "AlarmChange", "CaseChange", "Change", "FixChange", "GatewayChange",
           "ReadChange", "ReadingChange", "ReportChange", "StatusChange", "TaskAckChange", "change_from"]


@dataclass(frozen=True, slots=True)
class AlarmAckChange(_Change):
    """A person at the command center acknowledged an open alarm: one sensor's (an alarm is
    (sensor_id, alarm_id); two sensors may use the same alarm id)."""
    KIND = "alarm_ack"
    alarm_id: str
    grid_code: str
    t: float
    acknowledged_by: str
    sensor_id: str


@dataclass(frozen=True, slots=True)
class CaseChange(_Change):
    """A case as it is after a change (cases.tell): what the screens draw of it. Routed by the org
    unit responsible (its grid, or the level a case is held at); only the newest state counts."""
    KIND = "case"
    ROUTE_FIELD = "org_code"
    COALESCE_FIELDS = ("case_id",)
    case_id: str
    grid_code: str | None
    org_code: str
    t: float                       # when it opened
    state: str                     # a cases.model.State value
    category: str
    urgency: str
    source: str
    title: str
    place: str
    stage: str | None              # the clock that runs (None: none)
    deadline: float | None
    warn_at: float | None
    escalation_level: str | None   # the highest org level told for this stage
    handler_name: str | None       # the member it is dispatched to, by name
    acknowledged: bool = False
    closed_at: float | None = None
    lon: float | None = None
    lat: float | None = None
    sos_member: str | None = None  # an SOS: the member's terminal (their marker pulses until acknowledged)
    unassigned: bool = False       # its offers ran out: it waits in the dispatch queue for a person


CHANGE_TYPES: dict[str, type] = {c.KIND: c for c in (*kinds.change_types(), AlarmAckChange, CaseChange)}
Change = functools.reduce(operator.or_, CHANGE_TYPES.values())   # any change (a union type, for annotations)


def change_from(kind: str, data: dict) -> Change:
    """A change from its JSON form; unknown fields (from a newer writer) are left out."""
    cls = CHANGE_TYPES[kind]
    names = _field_names(cls)
    return cls(**{k: v for k, v in data.items() if k in names})


_FIELD_NAMES: dict[type, frozenset[str]] = {}


def _field_names(cls: type) -> frozenset[str]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = frozenset(f.name for f in fields(cls))
    return names

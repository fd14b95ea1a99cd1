"""The typed changes a committed batch makes: what the live bus carries (see telemetry.live)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

# --- the changes a committed batch makes (what the bus carries) -----------------------------------
# Each change names the org unit whose screens see it (`route_code`: a member's changes go to their
# own grid, whatever grid they are walking through; everything else to where it happened) and, for
# the kinds where only the newest matters, the identity under which changes coalesce.

class _Change:
    """What every change says besides its data: its kind, the field naming the org unit whose
    screens see it, and the fields under which changes coalesce (none: every change counts)."""
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


@dataclass(frozen=True, slots=True)
class FixChange(_Change):
    KIND = "fix"
    ROUTE_FIELD = "home_grid_code"
    COALESCE_FIELDS = ("terminal_id",)
    terminal_id: str
    member_id: str
    home_grid_code: str
    grid_code: str | None          # where the fix lies
    t: float
    lon: float
    lat: float
    battery_pct: int | None = None
    speed_mps: float | None = None
    heading_deg: float | None = None
    accuracy_m: float | None = None


@dataclass(frozen=True, slots=True)
class StatusChange(_Change):
    KIND = "status"
    ROUTE_FIELD = "home_grid_code"
    COALESCE_FIELDS = ("terminal_id",)
    terminal_id: str
    member_id: str
    home_grid_code: str
    t: float
    state: str                     # a MemberState value
    battery_pct: int | None = None
    sos: bool = False


@dataclass(frozen=True, slots=True)
class ReadingChange(_Change):
    KIND = "reading"
    COALESCE_FIELDS = ("sensor_id", "quantity")
    sensor_id: str
    grid_code: str
    t: float
    quantity: str
    value: float | None = None
    value_bool: bool | None = None
    value_text: str | None = None
    value_sum: float | None = None
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class AlarmChange(_Change):
    KIND = "alarm"
    alarm_id: str
    sensor_id: str
    building_id: str
    grid_code: str
    t: float
    alarm_type: str
    severity: int
    state: str                     # raised / cleared
    value: float | None = None
    lon: float | None = None       # the sensor's place (reference data)
    lat: float | None = None
    acknowledged_by: str | None = None   # filled in by the screens' queries from the database, never
    acknowledged_at: float | None = None   # by the ingest (an acknowledgement travels as AlarmAckChange)


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
class ReportChange(_Change):
    """An incident report. The bus carries its text; the live state keeps it without description
    and photo reference (ingest.live), so a snapshot's reports have them as None."""
    KIND = "report"
    report_id: str
    terminal_id: str
    member_id: str
    grid_code: str
    t: float
    category: str
    severity: int
    lon: float
    lat: float
    address: str | None = None
    description: str | None = None
    photo_ref: str | None = None


@dataclass(frozen=True, slots=True)
class GatewayChange(_Change):
    KIND = "gateway"
    COALESCE_FIELDS = ("gateway_id",)
    gateway_id: str
    grid_code: str
    t: float
    state: str


@dataclass(frozen=True, slots=True)
class TaskAckChange(_Change):
    KIND = "task_ack"
    ROUTE_FIELD = "home_grid_code"
    task_id: str
    terminal_id: str
    member_id: str
    home_grid_code: str
    t: float
    action: str                    # accepted / rejected / arrived / done
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ReadChange(_Change):
    """A member has read an announcement (their terminal's receipt): the announcement pages count
    it (from the database: only a recipient's receipt counts)."""
    KIND = "read"
    ROUTE_FIELD = "home_grid_code"
    announcement_id: int
    terminal_id: str
    home_grid_code: str
    t: float


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


Change = (FixChange | StatusChange | ReadingChange | AlarmChange | AlarmAckChange | ReportChange | GatewayChange
          | TaskAckChange | ReadChange | CaseChange)
CHANGE_TYPES: dict[str, type] = {c.KIND: c for c in (FixChange, StatusChange, ReadingChange, AlarmChange,
                                                     AlarmAckChange, ReportChange, GatewayChange, TaskAckChange,
                                                     ReadChange, CaseChange)}


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

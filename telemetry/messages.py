"""The validated message types every decoder produces and every later stage consumes.

Each type is an immutable pydantic model (frozen, unknown fields forbidden, strict types: a string is
never silently turned into a number, nor 1 into True). Every time is a timezone-aware UTC datetime:
a naive datetime is refused, any other offset is converted to UTC. Floats must be finite.

Ids (terminal, sensor, gateway, alarm, task, report) are 1..64 characters with no whitespace, no
control characters and none of the MQTT topic characters '/', '+', '#'. Everything else is allowed,
notably ':' '.' '-' '_' (SenML sensor names are often URNs such as ``urn:dev:ow:10e2073a01080063``).

Free text (an address, a description, a note, a reading's text value or unit, a region, a category,
and every string inside an alarm's ``detail``, its keys included) may hold anything but NUL
(U+0000): PostgreSQL cannot store it in ``text`` or ``jsonb``, so it is refused here, with the
error type INVALID_TEXT, and never reaches the database. The text fields of ``Text`` are also held
to core.freetext's rule for people's text (no control characters but line feeds and tabs, no
bidirectional overrides), refused with the same error type.
"""
from __future__ import annotations

import math
import re
import unicodedata
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from core import freetext
from core.catalogue import INCIDENT_CATEGORIES, AlarmType

ID_MAX_LENGTH = 64
DETAIL_MAX_BYTES = 4096
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
INVALID_TEXT = "invalid_text"  # the validation error type of a NUL in free text (a decoder's reason code too)
_NUL = "\x00"
# what a device's free text may hold besides NUL: core.freetext's rule for multi-line text (line
# feeds and tabs, no other control characters, no bidirectional overrides); each field has its own length
_DEVICE_TEXT = freetext.Kind("device text", 1 << 20, multiline=True)


_PLAIN_ID = re.compile(r"[A-Za-z0-9._:@=-]*")   # the usual ids, accepted without a look at each character


def _check_id(value: str) -> str:
    if _PLAIN_ID.fullmatch(value):
        return value
    for ch in value:
        if ch in "/+#":
            raise ValueError(f"must not contain {ch!r} (an MQTT topic character)")
        if ch.isspace() or unicodedata.category(ch).startswith("C"):
            raise ValueError(f"must not contain whitespace or control characters, found {ch!r}")
    return value


def is_valid_id(value: object) -> bool:
    """True when ``value`` may be a device/sensor/alarm/task/report id (the rule of ``Id``)."""
    if not isinstance(value, str) or not 1 <= len(value) <= ID_MAX_LENGTH:
        return False
    try:
        _check_id(value)
    except ValueError:
        return False
    return True


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is out of range in UTC") from None


def _refuse_nul(where: str) -> PydanticCustomError:
    return PydanticCustomError(INVALID_TEXT, "must not contain NUL (\\u0000){where}: PostgreSQL cannot store it",
                               {"where": where})


def _check_text(value: str) -> str:
    if _NUL in value:
        raise _refuse_nul("")
    wrong = freetext.problem(value, _DEVICE_TEXT)
    if wrong:
        raise PydanticCustomError(INVALID_TEXT, "{wrong}", {"wrong": wrong})
    return value


def _nul_in(value: Any, path: str) -> str | None:
    """The path of the first string (key or value) holding a NUL inside a JSON value, else None."""
    if isinstance(value, str):
        return path if _NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and _NUL in key:
                return f"{path}, in the key {key!r}"
            found = _nul_in(item, f"{path}[{key!r}]")
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_in(item, f"{path}[{index}]")
            if found:
                return found
    return None


def _check_detail(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        raw = orjson.dumps(value)       # first: it stops at 255 levels, so the walk below stays shallow
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise ValueError(f"must be a JSON object: {exc}") from None
    if len(raw) > DETAIL_MAX_BYTES:
        raise ValueError(f"is {len(raw)} bytes as JSON, more than {DETAIL_MAX_BYTES}")
    where = _nul_in(value, "detail") if b"\\u0000" in raw else None   # walked only to name the place
    if where:
        raise _refuse_nul(f", found at {where}")
    return value


Id = Annotated[str, Field(min_length=1, max_length=ID_MAX_LENGTH), AfterValidator(_check_id)]
Text = Annotated[str, AfterValidator(_check_text)]   # free text: no NUL, no other control but LF, CR, tab
UtcTime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
NonNegative = Annotated[float, Field(ge=0)]
BatteryPct = Annotated[int, Field(ge=0, le=100)]
SeverityLevel = Annotated[int, Field(ge=1, le=4)]
FixSource = Literal["gcc", "owntracks", "owntracks-http", "osmand"]
OnlineState = Literal["online", "offline"]


def utc_from_epoch(seconds: int | float) -> datetime:
    """Seconds since the Unix epoch (int or float, microsecond precision) as a UTC datetime.

    Raises ValueError for booleans, non-numbers, NaN/inf and times outside datetime's range.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError(f"must be a number of seconds since the epoch, got {seconds!r}")
    if isinstance(seconds, float) and not math.isfinite(seconds):
        raise ValueError(f"must be finite, got {seconds!r}")
    try:
        return _EPOCH + timedelta(microseconds=round(seconds * 1_000_000))
    except OverflowError:
        hint = " (milliseconds? times are in seconds)" if seconds > 1e11 else ""
        raise ValueError(f"{seconds!r} seconds since the epoch is out of range{hint}") from None


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class Fix(_Message):
    """A GPS fix of a member's handheld terminal (our JSON) or a phone running OwnTracks."""
    terminal_id: Id
    time: UtcTime
    lat: Latitude
    lon: Longitude
    accuracy_m: NonNegative | None = None
    speed_mps: NonNegative | None = None
    heading_deg: Annotated[float, Field(ge=0, lt=360)] | None = None
    altitude_m: float | None = None
    battery_pct: BatteryPct | None = None
    source: FixSource
    device: Id | None = None  # the OwnTracks device name (second topic level)


class TerminalStatus(_Message):
    terminal_id: Id
    time: UtcTime
    state: OnlineState
    battery_pct: BatteryPct | None = None
    sos: bool = False
    will: bool = False   # the broker published it: the terminal's last will (its time is set at connect)
    source: FixSource


class SensorReading(_Message):
    """One measurement: exactly one of value / value_text / value_bool, or only value_sum."""
    sensor_id: Id
    time: UtcTime
    quantity: Id
    value: float | None = None
    value_text: Text | None = None
    value_bool: bool | None = None
    value_sum: float | None = None
    unit: Text | None = None
    gateway_id: Id | None = None

    @model_validator(mode="after")
    def _one_value(self) -> SensorReading:
        given = [name for name in ("value", "value_text", "value_bool")
                 if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"exactly one of value, value_text, value_bool may be set, got {given}")
        if not given and self.value_sum is None:
            raise ValueError("one of value, value_text, value_bool (or value_sum alone) is required")
        return self


class DeviceAlarm(_Message):
    alarm_id: Id
    sensor_id: Id
    time: UtcTime
    alarm_type: AlarmType = Field(strict=False)  # accepts the enum's string value
    severity: SeverityLevel
    state: Literal["raised", "cleared"]
    value: float | None = None
    detail: Annotated[dict[str, Any] | None, AfterValidator(_check_detail)] = None
    gateway_id: Id | None = None


class IncidentReport(_Message):
    report_id: Id
    terminal_id: Id
    time: UtcTime
    category: Text
    severity: SeverityLevel
    lat: Latitude
    lon: Longitude
    address: Annotated[Text, Field(max_length=200)] | None = None
    description: Annotated[Text, Field(max_length=2000)] | None = None
    photo_ref: Annotated[Text, Field(max_length=512)] | None = None

    @field_validator("category")
    @classmethod
    def _known_category(cls, value: str) -> str:
        if value not in INCIDENT_CATEGORIES:
            raise ValueError(f"unknown incident category {value!r} "
                             "(see core.catalogue.INCIDENT_CATEGORIES)")
        return value


class TaskAck(_Message):
    task_id: Id
    terminal_id: Id
    time: UtcTime
    action: Literal["accepted", "rejected", "arrived", "done"]
    note: Annotated[Text, Field(max_length=500)] | None = None


class CaseUpdate(_Message):
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


class AnnouncementRead(_Message):
    """A member has read an announcement (the receipt their terminal sends once it is shown)."""
    announcement_id: Annotated[int, Field(gt=0, lt=2**63)]
    terminal_id: Id
    time: UtcTime


class DiaryEntry(_Message):
    """A people's-feelings diary entry (民情日记): what a member heard from residents on patrol, in a
    few sentences, with what it is about (core.catalogue.DIARY_CATEGORIES). Counted in the
    assessment; a leader may rate its quality."""
    entry_id: Id
    terminal_id: Id
    time: UtcTime
    category: Literal["livelihood", "safety", "environment", "dispute", "suggestion", "other"]
    text: Annotated[Text, Field(min_length=1, max_length=500)]


class GatewayStatus(_Message):
    gateway_id: Id
    time: UtcTime
    state: OnlineState
    will: bool = False   # the broker published it: the gateway's last will (its time is set at connect)


class RegionTransition(_Message):
    """An OwnTracks region (waypoint) enter/leave event. The booklet marks lat/lon optional."""
    terminal_id: Id
    time: UtcTime
    event: Literal["enter", "leave"]
    region: Text | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None
    accuracy_m: NonNegative | None = None


Message = (Fix | TerminalStatus | SensorReading | DeviceAlarm | IncidentReport | TaskAck | CaseUpdate | GatewayStatus
           | RegionTransition | AnnouncementRead | DiaryEntry)

__all__ = ["AnnouncementRead", "CaseUpdate", "DeviceAlarm", "DiaryEntry", "Fix", "GatewayStatus", "IncidentReport",
           "Message", "RegionTransition", "SensorReading", "TaskAck", "TerminalStatus", "is_valid_id", "utc_from_epoch",
           "ID_MAX_LENGTH", "DETAIL_MAX_BYTES", "INVALID_TEXT", "Text"]

"""What every message type is built from: its base model and the field types of the wire contract.

Each message type (one per kind, in telemetry/kinds/) is an immutable pydantic model subclassing
`WireMessage` (frozen, unknown fields forbidden, strict types: a string is
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
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from core import freetext

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
Detail = Annotated[dict[str, Any] | None, AfterValidator(_check_detail)]   # a JSON object, <= 4 KB, no NUL
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


class WireMessage(BaseModel):
    """The base of every message type: frozen, unknown fields forbidden, strict, finite floats."""
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


"""SenML packs (RFC 8428, JSON representation) from building gateways.

``resolve`` turns a pack into resolved records exactly as RFC 8428 section 4.6 describes, and knows
nothing of this project; ``decode`` then maps each resolved name to (sensor, quantity) by the
registry's sensor names (``SensorNames``):

- a name that is exactly a registered sensor's takes its quantity from its unit (``Cel`` is a
  temperature: senml_units, over RFC 8428's units registry);
- else the longest registered sensor name that prefixes the name, followed by ``:``, ``/`` or
  ``.``, is the sensor, and the rest the quantity (``urn:dev:ow:10e2073a01080063:voltage``);
- else (no registered sensor: the ingest refuses it as unknown_device, naming it) the name split at
  its last ``/``, or the whole name with the unit's quantity.

Resolution (sections 4.1-4.6):
- base fields (bn, bt, bu, bv, bs, bver) apply to their own record and every later one, until a
  later record sets the same base field again;
- name = bn + n; time = bt + t; unit = u if present, else bu;
- value = bv + v, for a record that carries v (bv never creates a value on a record without v:
  a record carries exactly one Value field, or none when it has a Sum); vs, vb, vd are taken as
  they are (vd, base64url data, is kept as its text);
- sum = bs + s, present when either bs (in effect) or s is (section 4.5.4: "If only one of Base Sum
  or Sum is present, the missing field is considered to have a value of zero");
- a resolved time below 2**28 is relative to ``now`` (negative: in the past); at or above 2**28 it is
  seconds since the Unix epoch; no time at all is "roughly now";
- a record made only of base fields (e.g. ``{"bn": "urn:dev:ow:10e2073a01080063:"}`` in section
  5.1.7) sets context and is not itself a measurement;
- fields ending in '_' must be understood: refused; other unknown fields are ignored;
- a version (bver) above 10 is refused, as is a pack whose records disagree on the version;
- resolved records come out in chronological order (stable for equal times).
"""
from __future__ import annotations

import math
import re
from collections.abc import Container
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import ValidationError

from telemetry.decoders.errors import INVALID_SENML, DecodeError, load_json, refused, shown
from telemetry.decoders.senml_units import QUANTITY_OF_UNIT
from telemetry.messages import Message, SensorReading, utc_from_epoch

SENML_VERSION = 10
RELATIVE_TIME_LIMIT = 2 ** 28  # 268,435,456 s: smaller resolved times are relative to "now"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-:./_]*")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_NUMBER, _STRING, _BOOLEAN, _VERSION = "a number", "a string", "a boolean", "a positive integer"
_LABELS = {"bn": _STRING, "bt": _NUMBER, "bu": _STRING, "bv": _NUMBER, "bs": _NUMBER,
           "bver": _VERSION, "n": _STRING, "u": _STRING, "v": _NUMBER, "vs": _STRING,
           "vb": _BOOLEAN, "vd": _STRING, "s": _NUMBER, "t": _NUMBER, "ut": _NUMBER}
_REGULAR = frozenset({"n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"})
_VALUES = ("v", "vs", "vb", "vd")


@dataclass(frozen=True)
class ResolvedRecord:
    """A SenML record with every base field applied and an absolute UTC time (RFC 8428 4.6)."""
    name: str
    time: datetime
    unit: str | None = None
    value: float | None = None
    value_text: str | None = None   # vs, or vd's base64url text
    value_bool: bool | None = None
    value_sum: float | None = None
    update_time: float | None = None


@dataclass(frozen=True)
class _Base:
    name: str = ""
    time: float = 0.0
    unit: str | None = None
    value: float | None = None
    sum: float | None = None
    version: int = SENML_VERSION
    version_set: bool = False


def resolve(pack: Any, now: datetime) -> list[ResolvedRecord]:
    """Resolve a parsed SenML pack (a list of record dicts); ``now`` anchors relative times.

    Raises DecodeError("invalid_senml") when the pack breaks RFC 8428.
    """
    if not isinstance(pack, list):
        raise DecodeError(INVALID_SENML, f"pack: expected a JSON array of records, got "
                                         f"{type(pack).__name__} {shown(pack)}")
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    now = now.astimezone(timezone.utc)
    base = _Base()
    resolved: list[ResolvedRecord] = []
    for index, record in enumerate(pack):
        where = f"record {index}"
        if not isinstance(record, dict):
            raise DecodeError(INVALID_SENML, f"{where}: expected a JSON object, got {shown(record)}")
        _check_labels(record, where)
        base = _apply_base(base, record, index, where)
        if _REGULAR.isdisjoint(record):
            continue  # base fields only: context for later records, not a measurement
        resolved.append(_resolve_record(record, base, now, where))
    resolved.sort(key=lambda r: r.time)
    return resolved


class SensorNames:
    """The registry's sensor names (any container: the ingest passes its dict of sensors) and the
    rule that maps a resolved record name to (sensor, quantity)."""
    SEPARATORS = ":/."

    def __init__(self, registered: Container[str] = frozenset()) -> None:
        self.registered = registered

    def split(self, name: str, unit: str | None) -> tuple[str, str]:
        if name in self.registered:
            return name, self._quantity_of(name, unit)
        for i in range(len(name) - 2, 0, -1):
            if name[i] in self.SEPARATORS and name[:i] in self.registered:
                return name[:i], name[i + 1:]
        sensor_id, _, quantity = name.rpartition("/")
        if sensor_id and quantity:
            return sensor_id, quantity
        return name, self._quantity_of(name, unit)

    @staticmethod
    def _quantity_of(name: str, unit: str | None) -> str:
        quantity = QUANTITY_OF_UNIT.get(unit or "")
        if quantity is None:
            said = f"its unit {unit!r} is not in RFC 8428's units registry" if unit else "it has no unit"
            raise DecodeError(INVALID_SENML, f"name {name!r} is a sensor's own name, so its unit says what it "
                                             f"measures, but {said}: name the quantity ({name}:<quantity>)")
        return quantity


NO_NAMES = SensorNames()


def decode(gateway_id: str, payload: bytes, received_at: datetime, names: SensorNames = NO_NAMES) -> list[Message]:
    """gcc/v1/gateway/{gateway_id}/senml: one SensorReading per resolved record."""
    records = resolve(load_json(payload), received_at)
    if not records:
        raise DecodeError(INVALID_SENML, "pack: no measurement records (only base fields, or empty)")
    return [_reading(gateway_id, record, names) for record in records]


def _reading(gateway_id: str, record: ResolvedRecord, names: SensorNames) -> SensorReading:
    sensor_id, quantity = names.split(record.name, record.unit)
    try:
        return SensorReading(sensor_id=sensor_id, quantity=quantity, time=record.time,
                             value=record.value, value_text=record.value_text,
                             value_bool=record.value_bool, value_sum=record.value_sum,
                             unit=record.unit, gateway_id=gateway_id)
    except ValidationError as exc:
        raise refused(exc, prefix=f"name {record.name!r}: ") from None


def _check_labels(record: dict[str, Any], where: str) -> None:
    for label, value in record.items():
        if label.endswith("_"):
            raise DecodeError(INVALID_SENML, f"{where}: {label}: must-understand field "
                                             "(ends in '_') that this decoder does not understand")
        expected = _LABELS.get(label)
        if expected is not None and not _is(value, expected):
            raise DecodeError(INVALID_SENML,
                              f"{where}: {label}: expected {expected}, got {shown(value)}")


def _is(value: Any, expected: str) -> bool:
    if expected == _STRING:
        return isinstance(value, str)
    if expected == _BOOLEAN:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if expected == _VERSION:
        return isinstance(value, int) and value > 0
    return isinstance(value, (int, float)) and math.isfinite(value)


def _apply_base(base: _Base, record: dict[str, Any], index: int, where: str) -> _Base:
    if "bver" in record:
        version = record["bver"]
        if version > SENML_VERSION:
            raise DecodeError(INVALID_SENML, f"{where}: bver: version {version} is newer than "
                                             f"{SENML_VERSION}, the version this decoder knows")
        if version != base.version and (base.version_set or index > 0):
            raise DecodeError(INVALID_SENML, f"{where}: bver: version {version} differs from "
                                             f"{base.version} of the earlier records")
        base = replace(base, version=version, version_set=True)
    updates = {field: record[label] for label, field in
               (("bn", "name"), ("bt", "time"), ("bu", "unit"), ("bv", "value"), ("bs", "sum"))
               if label in record}
    return replace(base, **updates) if updates else base


def _resolve_record(record: dict[str, Any], base: _Base, now: datetime,
                    where: str) -> ResolvedRecord:
    name = base.name + record.get("n", "")
    if not name:
        raise DecodeError(INVALID_SENML, f"{where}: no name (neither bn nor n)")
    if not _NAME.fullmatch(name):
        raise DecodeError(INVALID_SENML, f"{where}: name {name!r} must use only A-Z a-z 0-9 "
                                         "- : . / _ and start with a letter or digit")
    values = [label for label in _VALUES if label in record]
    if len(values) > 1:
        raise DecodeError(INVALID_SENML, f"{where} ({name}): carries {' and '.join(values)}; "
                                         "a record has at most one value")
    value_sum = None
    if "s" in record or base.sum is not None:
        value_sum = float((base.sum or 0) + record.get("s", 0))
    if not values and value_sum is None:
        raise DecodeError(INVALID_SENML, f"{where} ({name}): no value (v, vs, vb, vd) and no sum (s)")
    if "vd" in record and not _is_base64url(record["vd"]):
        raise DecodeError(INVALID_SENML, f"{where} ({name}): vd: not unpadded base64url data: "
                                         f"{shown(record['vd'])}")
    return ResolvedRecord(
        name=name, time=_time(base.time + record.get("t", 0), now, where),
        unit=record.get("u", base.unit),
        value=float((base.value or 0) + record["v"]) if "v" in record else None,
        value_text=record.get("vs", record.get("vd")), value_bool=record.get("vb"),
        value_sum=value_sum, update_time=record.get("ut"))


def _time(seconds: float, now: datetime, where: str) -> datetime:
    try:
        if seconds < RELATIVE_TIME_LIMIT:
            return now + timedelta(microseconds=round(seconds * 1_000_000))
        return utc_from_epoch(seconds)
    except (OverflowError, ValueError):
        raise DecodeError(INVALID_SENML, f"{where}: t: time {seconds!r} is out of range") from None


def _is_base64url(text: str) -> bool:
    return bool(_BASE64URL.fullmatch(text)) and len(text) % 4 != 1

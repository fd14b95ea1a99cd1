"""Our own JSON payloads, version 1 (docs/WIRE_FORMAT.md): terminals' and gateways' uplink topics.

Every payload is one JSON object. Its fields are named as the message's fields, except the time,
which is "ts": an ISO 8601 string with a timezone (Z or an offset), or a number of seconds since the
Unix epoch. Unknown fields are refused (schema_violation), so a typo never passes unnoticed. The
device id comes from the topic (the broker authenticated it), never from the payload.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ValidationError

from telemetry import topics
from telemetry.decoders.errors import SCHEMA_VIOLATION, WRONG_TOPIC, DecodeError, load_json, refused, shown
from telemetry.messages import (
    AnnouncementRead,
    CaseUpdate,
    DeviceAlarm,
    DiaryEntry,
    Fix,
    GatewayStatus,
    IncidentReport,
    Message,
    SensorReading,
    TaskAck,
    TerminalStatus,
    utc_from_epoch,
)

MAX_READINGS = 1000

# leaf -> (message type, payload fields besides "ts", fields set by the decoder)
_TERMINAL_LEAVES: dict[str, tuple[type[BaseModel], frozenset[str], dict[str, Any]]] = {
    topics.FIX: (Fix, frozenset({"lat", "lon", "accuracy_m", "speed_mps", "heading_deg",
                            "altitude_m", "battery_pct"}), {"source": "gcc"}),
    topics.STATUS: (TerminalStatus, frozenset({"state", "battery_pct", "sos", "will"}), {"source": "gcc"}),
    topics.INCIDENT: (IncidentReport, frozenset({"report_id", "category", "severity", "lat", "lon",
                                            "address", "description", "photo_ref"}), {}),
    topics.TASK_ACK: (TaskAck, frozenset({"task_id", "action", "note"}), {}),
    topics.CASE: (CaseUpdate, frozenset({"case_id", "action", "note", "reason", "photo_refs", "extension"}), {}),
    topics.READ: (AnnouncementRead, frozenset({"announcement_id"}), {}),
    topics.DIARY: (DiaryEntry, frozenset({"entry_id", "category", "text"}), {}),
}
_ALARM_FIELDS = frozenset({"alarm_id", "sensor_id", "alarm_type", "severity", "state", "value",
                           "detail"})
_READING_FIELDS = frozenset({"sensor_id", "quantity", "value", "value_text", "value_bool", "unit"})
_GATEWAY_LEAVES = frozenset({topics.READING, topics.ALARM, topics.STATUS})  # senml: see senml.py


def parse_ts(value: Any, field: str = "ts") -> datetime:
    """Our time rule: ISO 8601 with a timezone, or seconds since the epoch; returned in UTC."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise DecodeError(SCHEMA_VIOLATION, f"{field}: not an ISO 8601 time: {shown(value)}") \
                from None
        if parsed.tzinfo is None:
            raise DecodeError(SCHEMA_VIOLATION,
                              f"{field}: {shown(value)} has no timezone (add Z or an offset)")
        try:
            return parsed.astimezone(timezone.utc)
        except OverflowError:
            raise DecodeError(SCHEMA_VIOLATION, f"{field}: {shown(value)} is out of range") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return utc_from_epoch(value)
        except ValueError as exc:
            raise DecodeError(SCHEMA_VIOLATION, f"{field}: {exc}") from None
    raise DecodeError(SCHEMA_VIOLATION, f"{field}: expected an ISO 8601 string with a timezone or "
                                        f"seconds since the epoch, got {shown(value)}")


def decode_terminal(terminal_id: str, leaf: str, payload: bytes,
                    received_at: datetime) -> list[Message]:
    """gcc/v1/terminal/{terminal_id}/{leaf} for leaf in fix, status, incident, task/ack, case,
    announcement/read, diary."""
    if leaf not in _TERMINAL_LEAVES:
        raise DecodeError(WRONG_TOPIC, f"no uplink leaf {leaf!r} for a terminal")
    model, fields, fixed = _TERMINAL_LEAVES[leaf]
    obj = _object(load_json(payload))
    time = _required_ts(obj)
    return [_build(model, fields, obj, {**fixed, "terminal_id": terminal_id}, time)]


def decode_gateway(gateway_id: str, leaf: str, payload: bytes,
                   received_at: datetime) -> list[Message]:
    """gcc/v1/gateway/{gateway_id}/{leaf} for leaf in reading, alarm, status (senml: see senml)."""
    if leaf not in _GATEWAY_LEAVES:
        raise DecodeError(WRONG_TOPIC, f"no JSON uplink leaf {leaf!r} for a gateway")
    obj = _object(load_json(payload))
    if leaf == topics.READING:
        return _readings(gateway_id, obj, received_at)
    fixed = {"gateway_id": gateway_id}
    if leaf == topics.ALARM:
        return [_build(DeviceAlarm, _ALARM_FIELDS, obj, fixed, _required_ts(obj))]
    return [_build(GatewayStatus, frozenset({"state", "will"}), obj, fixed, _required_ts(obj))]


def _readings(gateway_id: str, obj: dict[str, Any], received_at: datetime) -> list[Message]:
    _refuse_unknown(obj, frozenset({"readings"}), "")
    default_time = parse_ts(obj["ts"]) if obj.get("ts") is not None else received_at
    items = obj.get("readings")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_READINGS:
        got = f"{len(items)} items" if isinstance(items, list) else shown(items)
        raise DecodeError(SCHEMA_VIOLATION,
                          f"readings: expected a list of 1..{MAX_READINGS} readings, got {got}")
    readings: list[Message] = []
    for index, item in enumerate(items):
        prefix = f"readings[{index}]."
        if not isinstance(item, dict):
            raise DecodeError(SCHEMA_VIOLATION,
                              f"readings[{index}]: expected a JSON object, got {shown(item)}")
        time = parse_ts(item["ts"], prefix + "ts") if item.get("ts") is not None else default_time
        readings.append(_build(SensorReading, _READING_FIELDS, item,
                               {"gateway_id": gateway_id}, time, prefix))
    return readings


def _object(document: Any) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise DecodeError(SCHEMA_VIOLATION,
                          f"payload: expected a JSON object, got {type(document).__name__} "
                          f"{shown(document)}")
    return document


def _required_ts(obj: dict[str, Any]) -> datetime:
    if obj.get("ts") is None:
        raise DecodeError(SCHEMA_VIOLATION, "ts: field required")
    return parse_ts(obj["ts"])


def _refuse_unknown(obj: dict[str, Any], fields: frozenset[str], prefix: str) -> None:
    unknown = sorted(set(obj) - fields - {"ts"})
    if unknown:
        allowed = ", ".join(sorted(fields | {"ts"}))
        names = ", ".join(f"{prefix}{name}" for name in unknown)
        raise DecodeError(SCHEMA_VIOLATION, f"{names}: unknown field(s); allowed: {allowed}")


def _build(model: type[BaseModel], fields: frozenset[str], obj: dict[str, Any],
           fixed: dict[str, Any], time: datetime, prefix: str = "") -> Any:
    _refuse_unknown(obj, fields, prefix)
    values = {name: value for name, value in obj.items() if name != "ts"}
    try:
        return model(**values, **fixed, time=time)
    except ValidationError as exc:
        raise refused(exc, {"time": "ts"}, prefix) from None

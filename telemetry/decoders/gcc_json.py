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

from telemetry import kinds
from telemetry.decoders.errors import SCHEMA_VIOLATION, WRONG_TOPIC, DecodeError, load_json, refused, shown
from telemetry.kinds import JsonTopic
from telemetry.messages import Message, utc_from_epoch

MAX_READINGS = 1000    # the records of one message (a gateway's readings)


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
    """gcc/v1/terminal/{terminal_id}/{leaf}, for the leaf of each terminal kind (telemetry.kinds)."""
    return decode_leaf("terminal", terminal_id, leaf, payload, received_at)


def decode_gateway(gateway_id: str, leaf: str, payload: bytes,
                   received_at: datetime) -> list[Message]:
    """gcc/v1/gateway/{gateway_id}/{leaf}, for the leaf of each gateway kind (senml: see senml)."""
    return decode_leaf("gateway", gateway_id, leaf, payload, received_at)


def decode_leaf(device: str, device_id: str, leaf: str, payload: bytes, received_at: datetime) -> list[Message]:
    """One message of our JSON, as its kind (the one declared for this device's leaf) maps it."""
    kind = kinds.BY_LEAF.get((device, leaf))
    if kind is None:
        raise DecodeError(WRONG_TOPIC, f"no JSON uplink leaf {leaf!r} for a {device}")
    wire = kind.json
    obj = _object(load_json(payload))
    fixed = {**wire.fixed, wire.id_field: device_id}
    if wire.records is not None:
        return _records(kind.model, wire, obj, fixed, received_at)
    return [_build(kind.model, wire.fields, obj, fixed, _required_ts(obj))]


def _records(model: type[BaseModel], wire: JsonTopic, obj: dict[str, Any], fixed: dict[str, Any],
             received_at: datetime) -> list[Message]:
    """A list of records under wire.records (a gateway's readings), each one message: timed by its
    own "ts", else the payload's, else its arrival."""
    name = wire.records
    _refuse_unknown(obj, frozenset({name}), "")
    default_time = parse_ts(obj["ts"]) if obj.get("ts") is not None else received_at
    items = obj.get(name)
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_READINGS:
        got = f"{len(items)} items" if isinstance(items, list) else shown(items)
        raise DecodeError(SCHEMA_VIOLATION, f"{name}: expected a list of 1..{MAX_READINGS} {name}, got {got}")
    records: list[Message] = []
    for index, item in enumerate(items):
        prefix = f"{name}[{index}]."
        if not isinstance(item, dict):
            raise DecodeError(SCHEMA_VIOLATION, f"{name}[{index}]: expected a JSON object, got {shown(item)}")
        time = parse_ts(item["ts"], prefix + "ts") if item.get("ts") is not None else default_time
        records.append(_build(model, wire.fields, item, fixed, time, prefix))
    return records


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

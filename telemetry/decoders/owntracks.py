"""The OwnTracks app's JSON payloads (https://owntracks.org/booklet/tech/json/), MQTT and HTTP mode.

Handled ``_type``s: ``location`` -> Fix, ``lwt`` -> TerminalStatus(offline), ``transition`` ->
RegionTransition. Any other ``_type`` is refused as unsupported_type. Unknown fields are ignored
(the apps add fields from version to version); the fields we map are validated.

Mapping: tst -> time, lat/lon, acc -> accuracy_m, alt -> altitude_m, vel (km/h) -> speed_mps,
cog -> heading_deg (360 -> 0), batt -> battery_pct. The apps omit acc/alt/cog/vel when zero or
unknown, so an absent one is None (unknown); iOS's "invalid" sentinel, a negative acc/vel/cog, is
also None.

The lwt's ``tst`` is, per the booklet, the time the app *connected*, not the time the broker
published the will, so the offline status is stamped with ``received_at``.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from telemetry import topics
from telemetry.decoders.errors import (
    SCHEMA_VIOLATION,
    UNSUPPORTED_TYPE,
    WRONG_TOPIC,
    DecodeError,
    load_json,
    refused,
    shown,
)
from telemetry.messages import Fix, Message, RegionTransition, TerminalStatus, is_valid_id, utc_from_epoch

# Sub-topics the apps publish to (telemetry.topics); their _type decides what we make of them.
PUBLISH_LEAVES = frozenset(topics.OWNTRACKS_UPLINK)
HANDLED_TYPES = ("location", "lwt", "transition")

# message field -> OwnTracks element, for error messages
_WIRE_NAMES = {"time": "tst", "accuracy_m": "acc", "altitude_m": "alt", "speed_mps": "vel",
               "heading_deg": "cog", "battery_pct": "batt", "region": "desc"}


def parse_topic(topic: str) -> tuple[str, str, str | None]:
    """owntracks/<user>/<device>[/<leaf>] -> (user, device, leaf or None), else wrong_topic."""
    parts = topic.split("/")
    if parts[0] != topics.OWNTRACKS_PREFIX or len(parts) not in (3, 4):
        raise DecodeError(WRONG_TOPIC, f"{topic!r} is not owntracks/<user>/<device>[/<leaf>]")
    user, device = parts[1], parts[2]
    leaf = parts[3] if len(parts) == 4 else None
    if not is_valid_id(user) or not is_valid_id(device):
        raise DecodeError(WRONG_TOPIC, f"{topic!r}: invalid user or device name")
    if leaf is not None and leaf not in PUBLISH_LEAVES:
        raise DecodeError(WRONG_TOPIC, f"{topic!r}: {leaf!r} is not a sub-topic OwnTracks apps "
                                       f"publish to (one of {', '.join(sorted(PUBLISH_LEAVES))})")
    return user, device, leaf


def decode_mqtt(user: str, device: str, payload: bytes, received_at: datetime) -> list[Message]:
    """A payload published to owntracks/<user>/<device>[/<leaf>]: identity from the topic."""
    obj = _object(load_json(payload))
    return _decode_object(obj, user, device, "owntracks", received_at)


def decode_http(payload: bytes, user: str | None, device: str | None,
                received_at: datetime) -> list[Message]:
    """A payload POSTed in OwnTracks' HTTP mode.

    ``user``/``device`` are the X-Limit-U / X-Limit-D headers (None or "" when absent). Without a
    user, identity falls back to the payload's ``topic`` (owntracks/<user>/<device>); with a user
    but no device, the device is the payload's ``tid``. No user at all -> schema_violation.
    """
    if received_at.tzinfo is None:
        raise ValueError("received_at must be a timezone-aware datetime")
    obj = _object(load_json(payload))
    terminal_id, device_name = _http_identity(obj, user or None, device or None)
    return _decode_object(obj, terminal_id, device_name, "owntracks-http", received_at)


def _http_identity(obj: dict[str, Any], user: str | None,
                   device: str | None) -> tuple[str, str | None]:
    if user is not None:
        tid = obj.get("tid")
        return user, device if device is not None else (tid if isinstance(tid, str) else None)
    topic = obj.get("topic")
    if not isinstance(topic, str):
        raise DecodeError(SCHEMA_VIOLATION, "no identity: no X-Limit-U header and no topic "
                                            "(owntracks/<user>/<device>) in the payload, "
                                            f"got topic={shown(topic)}")
    try:
        topic_user, topic_device, _ = parse_topic(topic)
    except DecodeError as exc:
        raise DecodeError(SCHEMA_VIOLATION, f"no identity: no X-Limit-U header, and topic: "
                                            f"{exc.detail}") from None
    return topic_user, device if device is not None else topic_device


def _decode_object(obj: dict[str, Any], terminal_id: str, device: str | None, source: str,
                   received_at: datetime) -> list[Message]:
    kind = obj.get("_type")
    if kind is None:
        raise DecodeError(SCHEMA_VIOLATION, "_type: field required")
    if kind not in HANDLED_TYPES:
        raise DecodeError(UNSUPPORTED_TYPE, f"_type: {shown(kind)} is not handled "
                                            f"(only {', '.join(HANDLED_TYPES)})")
    if kind == "lwt":
        return [_validated(TerminalStatus, terminal_id=terminal_id, time=received_at,
                           state="offline", source=source)]
    if kind == "transition":
        return [_validated(RegionTransition, terminal_id=terminal_id, time=_tst(obj),
                           **_present(obj, event="event", region="desc", lat="lat", lon="lon"),
                           accuracy_m=_unless_negative(_number(obj, "acc")))]
    return [_validated(Fix, terminal_id=terminal_id, device=device, source=source,
                       time=_tst(obj), **_present(obj, lat="lat", lon="lon", altitude_m="alt",
                                                  battery_pct="batt"),
                       accuracy_m=_unless_negative(_number(obj, "acc")),
                       speed_mps=_converted(_number(obj, "vel"), lambda kmh: kmh * 5 / 18),
                       heading_deg=_converted(_number(obj, "cog"), _heading))]


def _object(document: Any) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise DecodeError(SCHEMA_VIOLATION, f"payload: expected a JSON object, got "
                                            f"{type(document).__name__} {shown(document)}")
    return document


def _validated(model: type, **values: Any) -> Any:
    try:
        return model(**values)
    except ValidationError as exc:
        raise refused(exc, _WIRE_NAMES) from None


def _present(obj: dict[str, Any], **names: str) -> dict[str, Any]:
    """message field -> the payload's element, for the elements present (and not null)."""
    return {field: obj[element] for field, element in names.items()
            if obj.get(element) is not None}


def _tst(obj: dict[str, Any]) -> datetime:
    value = obj.get("tst")
    if value is None:
        raise DecodeError(SCHEMA_VIOLATION, "tst: field required")
    try:
        return utc_from_epoch(value)
    except ValueError as exc:
        raise DecodeError(SCHEMA_VIOLATION, f"tst: {exc}") from None


def _number(obj: dict[str, Any], element: str) -> float | None:
    value = obj.get(element)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DecodeError(SCHEMA_VIOLATION, f"{element}: expected a number, got {shown(value)}")
    return value


def _unless_negative(value: float | None) -> float | None:
    return None if value is None or value < 0 else value


def _converted(value: float | None, convert: Callable[[float], float]) -> float | None:
    value = _unless_negative(value)
    return None if value is None else convert(value)


def _heading(cog: float) -> float:
    return 0.0 if cog == 360 else cog

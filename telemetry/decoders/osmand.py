"""The OsmAnd protocol, as Traccar's server reads it (OsmAndProtocolDecoder, traccar/traccar
9e5c458) and Traccar Client sends it (a form POST of id, lat, lon, timestamp, accuracy, altitude,
speed, bearing, batt, charge, alarm; version 9 sent a JSON body): so a member can use that app.

Two forms, as Traccar tells them apart (by Content-Type, never by method or path):
- **parameters**: from the request URI's query string, or, when the URI has none at all, from a
  form-encoded body (GET with a query, POST with a body, or POST with the query in the URI);
  `id` or `deviceid`; `lat`/`lon` or `location=lat,lon`; `timestamp`: an integer below 2^31 - 1
  is epoch seconds, a larger one milliseconds, text with a `T` ISO 8601 with its zone, else
  `yyyy-MM-dd HH:mm:ss` (read as UTC; Traccar reads it in its server's zone), absent: the time of
  receipt; `speed` in knots; `bearing` or `heading` in degrees; `altitude`, `accuracy` in metres;
  `batt` in percent; `alarm=sos` is an SOS; `valid=false` (or anything but true/1) a fix the
  device itself says is not valid; other parameters (hdop, cell, wifi, charge, …) are ignored;
- **JSON** (Content-Type application/json): one object, `device_id`, `location.timestamp` (ISO
  8601), `location.coords.latitude/longitude/speed (m/s)/heading/accuracy/altitude` (negative:
  unknown), `location.battery.level` (0..1; negative: unknown), `location.alarm`.

What becomes of a request: a position makes a Fix; one without a position (a heartbeat, a push
token's registration, a fix the device calls invalid) an online TerminalStatus with its battery;
an SOS adds a TerminalStatus with sos set. Values Java would parse but no device means (NaN,
Infinity) and anything out of range are refused (schema_violation, naming the parameter).
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs

from pydantic import ValidationError

from telemetry.decoders.errors import SCHEMA_VIOLATION, DecodeError, load_json, refused, shown
from telemetry.messages import Fix, Message, TerminalStatus, utc_from_epoch

SOURCE = "osmand"
PREFIX = "osmand"                  # a request's place in dead letters: osmand/<id>/form | json
KNOT_MPS = 1852 / 3600
_INT_MAX = 2 ** 31 - 1             # Java's Integer.MAX_VALUE: Traccar's seconds/milliseconds boundary
_WIRE_NAMES = {"time": "timestamp", "accuracy_m": "accuracy", "altitude_m": "altitude", "speed_mps": "speed",
               "heading_deg": "bearing", "battery_pct": "batt"}


def topic(device_id: str, form: str) -> str:
    return f"{PREFIX}/{device_id}/{form}"


def is_json(content_type: str | None) -> bool:
    return (content_type or "").startswith("application/json")


def form_parameters(query: str, body: bytes) -> dict[str, list[str]]:
    """The request's parameters: the URI's, or the body's when the URI has none (as Traccar)."""
    params = parse_qs(query, keep_blank_values=True)
    if not params and body:
        params = parse_qs(body.decode("ascii", errors="replace"), keep_blank_values=True)
    return params


def claimed_id(params: dict[str, list[str]]) -> str | None:
    for key in ("id", "deviceid"):
        if params.get(key):
            return params[key][0]
    return None


def json_claimed_id(payload: bytes) -> str | None:
    try:
        obj = load_json(payload)
    except DecodeError:
        return None
    device_id = obj.get("device_id") if isinstance(obj, dict) else None
    return device_id if isinstance(device_id, str) else None


def decode_form(payload: bytes, device_id: str, received_at: datetime) -> list[Message]:
    """Form parameters (`payload` is the query string the request carried)."""
    params = {k: v[-1] for k, v in parse_qs(payload.decode("ascii", errors="replace"), keep_blank_values=True).items()}
    lat, lon = _number(params, "lat"), _number(params, "lon")
    if "location" in params:
        parts = params["location"].split(",")
        if len(parts) < 2:
            raise DecodeError(SCHEMA_VIOLATION, f"location: expected lat,lon, got {shown(params['location'])}")
        lat, lon = _finite(parts[0], "location"), _finite(parts[1], "location")
    time = _form_time(params.get("timestamp"), received_at)
    battery = _number(params, "batt")
    valid = params.get("valid", "true").lower() in ("true", "1")
    heading = _number(params, "bearing") if "bearing" in params else _number(params, "heading")
    speed = _number(params, "speed")
    fix = {"time": time, "lat": lat, "lon": lon, "accuracy_m": _unless_negative(_number(params, "accuracy")),
           "altitude_m": _number(params, "altitude"), "heading_deg": _heading(heading),
           "battery_pct": _percent(battery), "speed_mps": None if speed is None or speed < 0 else speed * KNOT_MPS}
    return _messages(device_id, fix, valid and lat is not None and lon is not None, params.get("alarm"))


def decode_json(payload: bytes, device_id: str, received_at: datetime) -> list[Message]:
    """A JSON body (Traccar Client 9): {"device_id": …, "location": {"timestamp", "coords", …}}."""
    obj = load_json(payload)
    if not isinstance(obj, dict):
        raise DecodeError(SCHEMA_VIOLATION, f"body: expected a JSON object, got {type(obj).__name__} {shown(obj)}")
    location = obj.get("location")
    if not isinstance(location, dict):
        raise DecodeError(SCHEMA_VIOLATION, f"location: expected an object, got {shown(location)}")
    stamp = location.get("timestamp")
    if not isinstance(stamp, str):
        raise DecodeError(SCHEMA_VIOLATION, f"location.timestamp: expected an ISO 8601 text, got {shown(stamp)}")
    coords = location.get("coords")
    coords = coords if isinstance(coords, dict) else {}
    battery = location.get("battery") if isinstance(location.get("battery"), dict) else {}
    level = _json_number(battery, "level", "location.battery.level")
    speed = _json_number(coords, "speed", "location.coords.speed")
    lat = _json_number(coords, "latitude", "location.coords.latitude")
    lon = _json_number(coords, "longitude", "location.coords.longitude")
    fix = {"time": _iso(stamp, "location.timestamp"), "lat": lat, "lon": lon,
           "accuracy_m": _unless_negative(_json_number(coords, "accuracy", "location.coords.accuracy")),
           "altitude_m": _json_number(coords, "altitude", "location.coords.altitude"),
           "heading_deg": _heading(_json_number(coords, "heading", "location.coords.heading")),
           "speed_mps": _unless_negative(speed),
           "battery_pct": None if level is None or level < 0 else _percent(math.floor(level * 100))}
    alarm = location.get("alarm")
    return _messages(device_id, fix, lat is not None and lon is not None, alarm if isinstance(alarm, str) else None)


def _messages(device_id: str, fix: dict[str, Any], positioned: bool, alarm: str | None) -> list[Message]:
    try:
        if positioned:
            out: list[Message] = [Fix(terminal_id=device_id, source=SOURCE, **fix)]
        else:
            out = [TerminalStatus(terminal_id=device_id, time=fix["time"], state="online",
                                  battery_pct=fix["battery_pct"], source=SOURCE)]
        if alarm == "sos":
            out.append(TerminalStatus(terminal_id=device_id, time=fix["time"], state="online",
                                      battery_pct=fix["battery_pct"], sos=True, source=SOURCE))
        return out
    except ValidationError as exc:
        raise refused(exc, _WIRE_NAMES) from None


def _finite(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DecodeError(SCHEMA_VIOLATION, f"{name}: expected a number, got {shown(text)}") from None
    if not math.isfinite(value):
        raise DecodeError(SCHEMA_VIOLATION, f"{name}: expected a finite number, got {shown(text)}")
    return value


def _number(params: dict[str, str], name: str) -> float | None:
    text = params.get(name)
    return None if text is None or text == "" else _finite(text, name)


def _json_number(obj: dict[str, Any], key: str, name: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DecodeError(SCHEMA_VIOLATION, f"{name}: expected a number, got {shown(value)}")
    return float(value)


def _unless_negative(value: float | None) -> float | None:
    return None if value is None or value < 0 else value


def _heading(value: float | None) -> float | None:
    if value is None or value < 0:
        return None
    return 0.0 if value == 360 else value


def _percent(value: float | None) -> int | None:
    return None if value is None else int(round(value))


def _form_time(text: str | None, received_at: datetime) -> datetime:
    if text is None or text == "":
        return received_at
    if text.lstrip("-").isdigit():
        number = int(text)
        try:
            return utc_from_epoch(number if number < _INT_MAX else number / 1000)
        except ValueError as exc:
            raise DecodeError(SCHEMA_VIOLATION, f"timestamp: {exc}") from None
    if "T" in text:
        return _iso(text, "timestamp")
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        raise DecodeError(SCHEMA_VIOLATION, f"timestamp: expected epoch seconds or milliseconds, ISO 8601 or "
                                            f"yyyy-MM-dd HH:mm:ss, got {shown(text)}") from None


def _iso(text: str, name: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise DecodeError(SCHEMA_VIOLATION, f"{name}: expected ISO 8601 with a zone, got {shown(text)}") from None
    if value.tzinfo is None:
        raise DecodeError(SCHEMA_VIOLATION, f"{name}: {shown(text)} has no zone (Z or ±hh:mm)")
    return value.astimezone(timezone.utc)

"""What simulated devices put on the wire (docs/WIRE_FORMAT.md), and malformed variants of it.

Pure functions from values to (topic, payload bytes). A message of our JSON is built from its kind's
declaration (telemetry.kinds: its topic leaf and payload fields) by `publication`, so a new kind is
sent with no code here: `publication("alarm_check", terminal_id, now, sensor_id=…, …)`.
"""
from __future__ import annotations

import random
from datetime import datetime

import orjson

from telemetry import kinds, topics
from telemetry.topics import gateway_topic, terminal_topic

Publication = tuple[str, bytes]


def _ts(now: datetime) -> str:
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(obj) -> bytes:
    return orjson.dumps({k: v for k, v in obj.items() if v is not None})


def publication(kind_name: str, device_id: str, now: datetime, **fields) -> Publication:
    """A message of a kind (telemetry.kinds, by name) in our JSON, from its device: on the kind's topic
    leaf under the device's own topic, its fields as the kind names them (None: left out, as the
    decoder's defaults are)."""
    kind = kinds.BY_NAME[kind_name]
    wire = kind.json
    if wire is None or wire.records is not None:
        raise ValueError(f"kind {kind.name!r} is not one message of our JSON (see readings_json, OwnTracks)")
    unknown = set(fields) - wire.fields
    if unknown:
        raise ValueError(f"kind {kind.name!r} has no payload field(s) {sorted(unknown)}")
    topic = terminal_topic if wire.device == "terminal" else gateway_topic
    return topic(device_id, wire.leaf), _dumps({"ts": _ts(now), **fields})


def fix(terminal_id: str, now: datetime, lon: float, lat: float, accuracy_m: float,
        speed_mps: float, heading_deg: float, battery_pct: int) -> Publication:
    return publication("fix", terminal_id, now, lat=round(lat, 7), lon=round(lon, 7), accuracy_m=accuracy_m,
                       speed_mps=round(speed_mps, 2), heading_deg=round(heading_deg, 1) % 360, battery_pct=battery_pct)


def status(terminal_id: str, now: datetime, state: str, battery_pct: int | None = None,
           sos: bool | None = None, will: bool | None = None) -> Publication:
    return publication("terminal_status", terminal_id, now, state=state, battery_pct=battery_pct, sos=sos, will=will)


def incident(terminal_id: str, now: datetime, report_id: str, category: str, severity: int,
             lon: float, lat: float, address: str, description: str, photo_ref: str | None) -> Publication:
    return publication("incident_report", terminal_id, now, report_id=report_id, category=category,
                       severity=severity, lat=round(lat, 7), lon=round(lon, 7), address=address,
                       description=description, photo_ref=photo_ref)


DIARY_NOTES = {   # what members hear on patrol, by category (the people's-feelings diary)
    "livelihood": "居民反映电梯维修后仍有异响，希望尽快复查",
    "safety": "夜间小区东门路灯不亮，老人出行不便",
    "environment": "垃圾分类点周末清运不及时，有异味",
    "dispute": "两户居民因楼道堆物发生争执，已初步调解",
    "suggestion": "居民建议在广场增设健身器材",
    "other": "独居老人近况良好，已上门走访",
}


def diary_entry(terminal_id: str, now: datetime, entry_id: str, category: str, text: str) -> Publication:
    """A people's-feelings diary entry (民情日记)."""
    return publication("diary_entry", terminal_id, now, entry_id=entry_id, category=category, text=text)


def task_ack(terminal_id: str, now: datetime, task_id: str, action: str, note: str | None = None) -> Publication:
    return publication("task_ack", terminal_id, now, task_id=task_id, action=action, note=note)


def announcement_read(terminal_id: str, now: datetime, announcement_id: int) -> Publication:
    """The receipt a terminal sends once its member has read an announcement."""
    return publication("announcement_read", terminal_id, now, announcement_id=announcement_id)


def case_update(terminal_id: str, now: datetime, case_id: str, action: str, note: str | None = None,
                reason: str | None = None, photo_refs: list[str] | tuple[str, ...] = (),
                extension: str | None = None) -> Publication:
    """A member's work on a case (accept, reject, start, feedback, verify_pass, verify_fail,
    extension); fields left out when empty, as the decoder's defaults are."""
    return publication("case_update", terminal_id, now, case_id=case_id, action=action, note=note, reason=reason,
                       photo_refs=list(photo_refs) or None, extension=extension)


def gateway_status(gateway_id: str, now: datetime, state: str, will: bool | None = None) -> Publication:
    return publication("gateway_status", gateway_id, now, state=state, will=will)


def readings_json(gateway_id: str, now: datetime,
                  readings: list[tuple[str, str, float | bool, str | None]]) -> Publication:
    """readings: (sensor_id, quantity, value, unit); booleans travel as value_bool. One message of
    many records, under the name the reading kind declares."""
    wire = kinds.BY_NAME["reading"].json
    items = []
    for sensor_id, quantity, value, unit in readings:
        item = {"sensor_id": sensor_id, "quantity": quantity, "unit": unit or None}
        item["value_bool" if isinstance(value, bool) else "value"] = value
        items.append({k: v for k, v in item.items() if v is not None})
    return gateway_topic(gateway_id, wire.leaf), orjson.dumps({"ts": _ts(now), wire.records: items})


def readings_senml(gateway_id: str, now: datetime,
                   readings: list[tuple[str, str, float | bool, str | None]]) -> Publication:
    """A SenML pack (RFC 8428): base time once, base name per sensor, n = quantity."""
    records: list[dict] = []
    last_sensor = None
    for sensor_id, quantity, value, unit in readings:
        record: dict = {}
        if not records:
            record["bt"] = round(now.timestamp(), 3)
        if sensor_id != last_sensor:
            record["bn"] = f"{sensor_id}/"
            last_sensor = sensor_id
        record["n"] = quantity
        if unit:
            record["u"] = unit
        record["vb" if isinstance(value, bool) else "v"] = value
        records.append(record)
    return gateway_topic(gateway_id, topics.SENML), orjson.dumps(records)


def alarm(gateway_id: str, now: datetime, alarm_id: str, sensor_id: str, alarm_type: str,
          severity: int, state: str, value: float | None = None) -> Publication:
    return publication("alarm", gateway_id, now, alarm_id=alarm_id, sensor_id=sensor_id,
                       alarm_type=alarm_type, severity=severity, state=state, value=value)


# --- malformed input, to exercise the dead-letter path -------------------------------------------
MALFORMED_KINDS = ("invalid_json", "not_an_object", "missing_field", "lat_out_of_range",
                   "naive_timestamp", "unknown_category", "unknown_field", "senml_without_name",
                   "senml_bad_version")


def malformed(kind: str, terminal_id: str, gateway_id: str, now: datetime, rng: random.Random) -> Publication:
    """A payload that a real, buggy device could send on its own topic, and that must be refused."""
    fix_topic = terminal_topic(terminal_id, topics.FIX)
    good = {"ts": _ts(now), "lat": 26.1, "lon": 119.3}
    if kind == "invalid_json":
        return fix_topic, b'{"ts": "' + _ts(now).encode() + b'", "lat": 26.1,'
    if kind == "not_an_object":
        return fix_topic, b"[26.1, 119.3]"
    if kind == "missing_field":
        return fix_topic, orjson.dumps({"ts": _ts(now), "lat": 26.1})
    if kind == "lat_out_of_range":
        return fix_topic, orjson.dumps({**good, "lat": 126.1})
    if kind == "naive_timestamp":
        return fix_topic, orjson.dumps({**good, "ts": now.replace(tzinfo=None).isoformat()})
    if kind == "unknown_category":
        return terminal_topic(terminal_id, topics.INCIDENT), orjson.dumps({
            "ts": _ts(now), "report_id": f"bad-{rng.getrandbits(32):08x}", "category": "alien_landing",
            "severity": 2, "lat": 26.1, "lon": 119.3})
    if kind == "unknown_field":
        return fix_topic, orjson.dumps({**good, "latitude": 26.1})
    if kind == "senml_without_name":
        return gateway_topic(gateway_id, topics.SENML), orjson.dumps([{"v": 1.0, "u": "m3"}])
    if kind == "senml_bad_version":
        return gateway_topic(gateway_id, topics.SENML), orjson.dumps([{"bver": 99, "bn": "x/", "n": "v", "v": 1}])
    raise ValueError(f"unknown malformed kind {kind!r}")

"""One entry per message type: everything the chain needs to know about it, in one place.

Adding a message type means its class (telemetry.messages), its decoder, and one entry here: who
sends it, whether it carries its own position, its table with the columns and natural key, the
row it becomes, and the live change it makes (if the screens show it).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import orjson

from ingest.model import Enriched
from telemetry import live, messages

Sender = Literal["terminal", "sensor", "gateway"]


@dataclass(frozen=True)
class MessageKind:
    message: type
    sender: Sender                   # whose registration the message is checked against
    table: str
    columns: tuple[str, ...]
    natural_key: tuple[str, ...]     # the table's unique key: a redelivery is never a second row
    row: Callable[[Enriched, datetime], tuple]
    change: Callable[[Enriched], live.Change] | None = None   # the live change; None: not live
    located: bool = False            # carries its own position: its grid is looked up from it
    outside_city_ok: bool = False    # a position outside every grid is still accepted


def _t(item: Enriched) -> float:
    """The time that orders the live state: the message's own, but never later than its arrival.
    A device clock ahead within the allowed skew (stages.MAX_FUTURE) must not make the device's
    next, correctly timed messages look older and be ignored until its fake time has passed."""
    t = item.message.time
    return min(t, item.received_at).timestamp() if item.received_at is not None else t.timestamp()


def _fix_change(item: Enriched) -> live.FixChange:
    m: messages.Fix = item.message
    return live.FixChange(m.terminal_id, item.member_id, item.home_grid_code, item.grid_code, _t(item), m.lon, m.lat,
                          m.battery_pct, m.speed_mps, m.heading_deg, m.accuracy_m)


def _status_change(item: Enriched) -> live.StatusChange:
    m: messages.TerminalStatus = item.message
    return live.StatusChange(m.terminal_id, item.member_id, item.home_grid_code, _t(item), m.state, m.battery_pct,
                             m.sos)


def _reading_change(item: Enriched) -> live.ReadingChange:
    m: messages.SensorReading = item.message
    return live.ReadingChange(m.sensor_id, item.grid_code, _t(item), m.quantity, value=m.value,
                              value_bool=m.value_bool, value_text=m.value_text, value_sum=m.value_sum, unit=m.unit)


def _alarm_change(item: Enriched) -> live.AlarmChange:
    m: messages.DeviceAlarm = item.message
    lon, lat = item.place or (None, None)
    return live.AlarmChange(m.alarm_id, m.sensor_id, item.building_id, item.grid_code, _t(item), m.alarm_type.value,
                            m.severity, m.state, m.value, lon, lat)


def _report_change(item: Enriched) -> live.ReportChange:
    m: messages.IncidentReport = item.message
    return live.ReportChange(m.report_id, m.terminal_id, item.member_id, item.grid_code, _t(item), m.category,
                             m.severity, m.lon, m.lat, m.address, m.description, m.photo_ref)


def _gateway_change(item: Enriched) -> live.GatewayChange:
    m: messages.GatewayStatus = item.message
    return live.GatewayChange(m.gateway_id, item.grid_code, _t(item), m.state)


def _read_change(item: Enriched) -> live.ReadChange:
    m: messages.AnnouncementRead = item.message
    return live.ReadChange(m.announcement_id, m.terminal_id, item.home_grid_code, _t(item))


def _task_ack_change(item: Enriched) -> live.TaskAckChange:
    m: messages.TaskAck = item.message
    return live.TaskAckChange(m.task_id, m.terminal_id, item.member_id, item.home_grid_code, _t(item), m.action,
                              m.note)


def _detail(m: messages.DeviceAlarm) -> str | None:
    return orjson.dumps(m.detail).decode() if m.detail is not None else None


KINDS: dict[type, MessageKind] = {k.message: k for k in (
    MessageKind(
        messages.Fix, "terminal", "positions",
        ("time", "terminal_id", "member_id", "grid_code", "lat", "lon", "accuracy_m", "speed_mps", "heading_deg",
         "altitude_m", "battery_pct", "source", "received_at"),
        ("terminal_id", "time"),
        lambda e, at: (e.message.time, e.message.terminal_id, e.member_id, e.grid_code, e.message.lat, e.message.lon,
                       e.message.accuracy_m, e.message.speed_mps, e.message.heading_deg, e.message.altitude_m,
                       e.message.battery_pct, e.message.source, at),
        _fix_change, located=True, outside_city_ok=True),       # a member near the edge: "out of area"
    MessageKind(
        messages.TerminalStatus, "terminal", "terminal_status",
        ("time", "terminal_id", "state", "battery_pct", "sos", "grid_code", "received_at"),
        ("terminal_id", "time"),
        lambda e, at: (e.message.time, e.message.terminal_id, e.message.state, e.message.battery_pct, e.message.sos,
                       e.grid_code, at),
        _status_change),
    MessageKind(
        messages.SensorReading, "sensor", "sensor_readings",
        ("time", "sensor_id", "quantity", "value", "value_text", "value_bool", "value_sum", "unit", "gateway_id",
         "building_id", "grid_code", "received_at"),
        ("sensor_id", "quantity", "time"),
        lambda e, at: (e.message.time, e.message.sensor_id, e.message.quantity, e.message.value, e.message.value_text,
                       e.message.value_bool, e.message.value_sum, e.message.unit, e.message.gateway_id,
                       e.building_id, e.grid_code, at),
        _reading_change),
    MessageKind(
        messages.DeviceAlarm, "sensor", "device_alarms",
        ("time", "alarm_id", "sensor_id", "alarm_type", "severity", "state", "value", "detail", "gateway_id",
         "building_id", "grid_code", "received_at"),
        ("sensor_id", "alarm_id", "state", "time"),
        lambda e, at: (e.message.time, e.message.alarm_id, e.message.sensor_id, e.message.alarm_type.value,
                       e.message.severity, e.message.state, e.message.value, _detail(e.message),
                       e.message.gateway_id, e.building_id, e.grid_code, at),
        _alarm_change),
    MessageKind(
        messages.IncidentReport, "terminal", "incident_reports",
        ("time", "report_id", "terminal_id", "member_id", "category", "severity", "lat", "lon", "address",
         "description", "photo_ref", "grid_code", "received_at"),
        ("terminal_id", "report_id", "time"),
        lambda e, at: (e.message.time, e.message.report_id, e.message.terminal_id, e.member_id, e.message.category,
                       e.message.severity, e.message.lat, e.message.lon, e.message.address, e.message.description,
                       e.message.photo_ref, e.grid_code, at),
        _report_change, located=True),
    MessageKind(
        messages.TaskAck, "terminal", "task_acks",
        ("time", "task_id", "terminal_id", "action", "note", "received_at"),
        ("terminal_id", "task_id", "action", "time"),
        lambda e, at: (e.message.time, e.message.task_id, e.message.terminal_id, e.message.action, e.message.note, at),
        _task_ack_change),
    MessageKind(
        messages.CaseUpdate, "terminal", "case_updates",
        ("time", "case_id", "terminal_id", "action", "note", "reason", "photo_refs", "extension", "received_at"),
        ("terminal_id", "case_id", "action", "time"),
        lambda e, at: (e.message.time, e.message.case_id, e.message.terminal_id, e.message.action, e.message.note,
                       e.message.reason, orjson.dumps(e.message.photo_refs).decode(), e.message.extension, at)),
    MessageKind(
        messages.AnnouncementRead, "terminal", "announcement_reads",
        ("time", "announcement_id", "terminal_id", "received_at"),
        ("terminal_id", "announcement_id", "time"),
        lambda e, at: (e.message.time, e.message.announcement_id, e.message.terminal_id, at),
        _read_change),
    MessageKind(
        messages.DiaryEntry, "terminal", "diary_entries",
        ("time", "entry_id", "terminal_id", "member_id", "grid_code", "category", "text", "received_at"),
        ("terminal_id", "entry_id", "time"),
        lambda e, at: (e.message.time, e.message.entry_id, e.message.terminal_id, e.member_id, e.home_grid_code,
                       e.message.category, e.message.text, at)),
    MessageKind(
        messages.GatewayStatus, "gateway", "gateway_status",
        ("time", "gateway_id", "state", "grid_code", "received_at"),
        ("gateway_id", "time"),
        lambda e, at: (e.message.time, e.message.gateway_id, e.message.state, e.grid_code, at),
        _gateway_change),
    MessageKind(
        messages.RegionTransition, "terminal", "region_transitions",
        ("time", "terminal_id", "event", "region", "lat", "lon", "accuracy_m", "grid_code", "received_at"),
        ("terminal_id", "event", "time"),
        lambda e, at: (e.message.time, e.message.terminal_id, e.message.event, e.message.region, e.message.lat,
                       e.message.lon, e.message.accuracy_m, e.grid_code, at),
        located=True, outside_city_ok=True),
)}
TABLES: dict[str, MessageKind] = {k.table: k for k in KINDS.values()}


def kind_of(message: messages.Message) -> MessageKind:
    return KINDS[type(message)]

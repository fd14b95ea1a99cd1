"""The validated message types every decoder produces and every later stage consumes: each is
declared by its kind's module (telemetry/kinds/), on the field types of telemetry.fields (the rules
every message keeps: frozen, strict, UTC times, ids without topic characters, text without NUL).

This module gathers them under one name: `Message` is any kind's model.
"""
from __future__ import annotations

import functools
import operator

from telemetry.fields import (
    DETAIL_MAX_BYTES,
    ID_MAX_LENGTH,
    INVALID_TEXT,
    Text,
    WireMessage,
    is_valid_id,
    utc_from_epoch,
)
from telemetry.kinds import KINDS
from telemetry.kinds.alarm import DeviceAlarm
from telemetry.kinds.announcement_read import AnnouncementRead
from telemetry.kinds.case_update import CaseUpdate
from telemetry.kinds.diary_entry import DiaryEntry
from telemetry.kinds.fix import Fix
from telemetry.kinds.gateway_status import GatewayStatus
from telemetry.kinds.incident_report import IncidentReport
from telemetry.kinds.reading import SensorReading
from telemetry.kinds.region_transition import RegionTransition
from telemetry.kinds.task_ack import TaskAck
from telemetry.kinds.terminal_status import TerminalStatus

Message = functools.reduce(operator.or_, KINDS)   # any kind's model (a union type, for annotations)

__all__ = ["AnnouncementRead", "CaseUpdate", "DeviceAlarm", "DiaryEntry", "Fix", "GatewayStatus", "IncidentReport",
           "Message", "RegionTransition", "SensorReading", "TaskAck", "TerminalStatus", "WireMessage", "is_valid_id",
           "utc_from_epoch", "ID_MAX_LENGTH", "DETAIL_MAX_BYTES", "INVALID_TEXT", "Text"]

"""An incident report from a member's terminal: category, severity, place, text, photos.

Photos: `photo_refs` names 0-4 photos uploaded on their own (docs/HANDHELD_API.md "Photos"); the
handheld names them `sha256:<64 lowercase hex>` (PHOTO_REF, the hash of the uploaded bytes), and
other refs (an old terminal's path) are kept as text. `photo_ref`, one ref, is what old terminals
send and stays accepted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, field_validator

from core.catalogue import INCIDENT_CATEGORIES
from telemetry.fields import Id, Latitude, Longitude, SeverityLevel, Text, UtcTime, WireMessage
from telemetry.kinds import JsonTopic, Kind, LiveChange, Tagged, live_time, register

MAX_PHOTOS = 4
PHOTO_REF_MAX = 200
PHOTO_REF = re.compile(r"sha256:([0-9a-f]{64})")   # a photo the server holds (handheld/photos.py): fullmatch


def photo_hex(ref: str | None) -> str | None:
    """The hex of a `sha256:<hex>` photo ref (a photo the server holds), None for any other ref."""
    found = PHOTO_REF.fullmatch(ref) if isinstance(ref, str) else None
    return found[1] if found else None


def pg_text_array(values) -> str:
    """A PostgreSQL array literal of text values (COPY's CSV writes it as one field)."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


class IncidentReport(WireMessage):
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
    photo_refs: Annotated[list[Annotated[Text, Field(min_length=1, max_length=PHOTO_REF_MAX)]],
                          Field(max_length=MAX_PHOTOS)] = []

    @field_validator("category")
    @classmethod
    def _known_category(cls, value: str) -> str:
        if value not in INCIDENT_CATEGORIES:
            raise ValueError(f"unknown incident category {value!r} "
                             "(see core.catalogue.INCIDENT_CATEGORIES)")
        return value


@dataclass(frozen=True, slots=True)
class ReportChange(LiveChange):
    """An incident report. The bus carries its text; the live state keeps it without description
    and photo reference (ingest.live), so a snapshot's reports have them as None."""
    KIND = "report"
    report_id: str
    terminal_id: str
    member_id: str
    grid_code: str
    t: float
    category: str
    severity: int
    lon: float
    lat: float
    address: str | None = None
    description: str | None = None
    photo_ref: str | None = None


def _change(item: Tagged) -> ReportChange:
    m: IncidentReport = item.message
    return ReportChange(m.report_id, m.terminal_id, item.member_id, item.grid_code, live_time(item), m.category,
                        m.severity, m.lon, m.lat, m.address, m.description, m.photo_ref)


KIND = register(Kind(
    "incident_report", IncidentReport, "terminal", "incident_reports",
    ("time", "report_id", "terminal_id", "member_id", "category", "severity", "lat", "lon", "address",
     "description", "photo_ref", "photo_refs", "grid_code", "received_at"),
    ("terminal_id", "report_id", "time"),
    lambda e, at: (e.message.time, e.message.report_id, e.message.terminal_id, e.member_id, e.message.category,
                   e.message.severity, e.message.lat, e.message.lon, e.message.address, e.message.description,
                   e.message.photo_ref, pg_text_array(e.message.photo_refs), e.grid_code, at),
    retention_days=1825,           # case records
    json=JsonTopic("terminal", "incident", frozenset({"report_id", "category", "severity", "lat", "lon", "address",
                                                      "description", "photo_ref", "photo_refs"})),
    change=_change, change_type=ReportChange, located=True))

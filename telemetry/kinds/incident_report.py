"""An incident report from a member's terminal: category, severity, place, text, photo."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, field_validator

from core.catalogue import INCIDENT_CATEGORIES
from telemetry.fields import Id, Latitude, Longitude, SeverityLevel, Text, UtcTime, WireMessage
from telemetry.kinds import JsonTopic, Kind, LiveChange, Tagged, live_time, register


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
     "description", "photo_ref", "grid_code", "received_at"),
    ("terminal_id", "report_id", "time"),
    lambda e, at: (e.message.time, e.message.report_id, e.message.terminal_id, e.member_id, e.message.category,
                   e.message.severity, e.message.lat, e.message.lon, e.message.address, e.message.description,
                   e.message.photo_ref, e.grid_code, at),
    retention_days=1825,           # case records
    json=JsonTopic("terminal", "incident", frozenset({"report_id", "category", "severity", "lat", "lon", "address",
                                                      "description", "photo_ref"})),
    change=_change, change_type=ReportChange, located=True))

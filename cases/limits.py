"""Time limits: how long each stage of a case may take, per (category, stage, urgency).

The real rules mix units: register and dispatch within 10 minutes when urgent, 30 when not; a
missing manhole cover handled in 2 hours; exposed garbage in 1 working day; a dirty road in 5
working hours; illegal construction in 15 working days. A limit says its unit, and the calendar
(cases.calendar) turns it into a deadline. The table is data: the defaults below seed version 1 of
the `time_limits` table, an admin edits it into new versions, and a case keeps the version it
started with. A row's category or urgency may be "*" (any); the most specific row wins.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from core.catalogue import INCIDENT_CATEGORIES, AlarmType, Severity

ANY = "*"
SOS_CATEGORY = "sos"                # a member's emergency report (the handheld's SOS)


class Unit(str, Enum):
    MINUTES = "minutes"             # clock minutes, nights and holidays included (urgent work)
    WORKING_HOURS = "working_hours"
    WORKING_DAYS = "working_days"   # one day's working minutes each


_SPEC = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|wh|wd)\s*$")
_UNIT_OF = {"m": (Unit.MINUTES, 1), "min": (Unit.MINUTES, 1), "h": (Unit.MINUTES, 60),
            "wh": (Unit.WORKING_HOURS, 1), "wd": (Unit.WORKING_DAYS, 1)}


@dataclass(frozen=True)
class Limit:
    amount: float
    unit: Unit

    def __post_init__(self) -> None:
        if not self.amount > 0:
            raise ValueError(f"a time limit is positive, not {self.amount}")

    @classmethod
    def parse(cls, spec: str) -> Limit:
        """'30m', '2h' (clock), '5wh' (working hours), '1wd' (working days)."""
        match = _SPEC.match(spec)
        if match is None:
            raise ValueError(f"{spec!r} is not a time limit (e.g. 30m, 2h, 5wh, 1wd)")
        unit, factor = _UNIT_OF[match.group(2)]
        return cls(float(match.group(1)) * factor, unit)

    def scaled(self, factor: float) -> Limit:
        return Limit(self.amount * factor, self.unit)

    def working_minutes(self, minutes_per_day: int) -> float:
        if self.unit is Unit.WORKING_HOURS:
            return self.amount * 60
        if self.unit is Unit.WORKING_DAYS:
            return self.amount * minutes_per_day
        raise ValueError("clock minutes are not working minutes")

    def __str__(self) -> str:
        n = f"{self.amount:g}"
        return {Unit.MINUTES: f"{n} min", Unit.WORKING_HOURS: f"{n} working h",
                Unit.WORKING_DAYS: f"{n} working d"}[self.unit]


class Stage(str, Enum):
    """The clock that runs while a case waits for someone: one at a time."""
    REGISTER = "register"           # reported -> registered or refused
    DISPATCH = "dispatch"           # registered -> dispatched
    ACCEPT = "accept"               # dispatched -> accepted
    HANDLE = "handle"               # accepted / handling -> handled (feedback)
    VERIFY = "verify"               # handled -> verified or rework
    CLOSE = "close"                 # verified -> closed


class Urgency(str, Enum):
    URGENT = "urgent"
    NORMAL = "normal"

    @classmethod
    def of(cls, severity: int, sos: bool = False) -> Urgency:
        return cls.URGENT if sos or severity >= Severity.HIGH else cls.NORMAL


@dataclass(frozen=True)
class LimitRow:
    category: str                   # a category code, or ANY
    stage: Stage
    urgency: str                    # an Urgency value, or ANY
    limit: Limit


# How long handling may take, per category (the local standards' 处置时限).
HANDLING: dict[str, str] = {
    "exposed_garbage": "1wd", "dirty_road": "5wh", "illegal_construction": "15wd", "street_vending": "4wh",
    "illegal_parking": "2h", "blocked_fire_lane": "1h", "fire_hazard": "1wd", "safety_hazard": "1wd",
    "water_leak": "8wh", "neighbour_dispute": "3wd", "noise": "1wd", "stray_animal": "1wd", "flyposting": "2wd",
    "damaged_road": "3wd", "manhole_cover": "2h", "street_light": "2wd", "elevator": "4h", "public_facility": "3wd",
    # device alarms (the category of an alarm's case is its alarm type)
    AlarmType.ELEVATOR_ENTRAPMENT.value: "30m",        # the elevator rules: on site within 30 minutes
    AlarmType.GAS_OVER_THRESHOLD.value: "30m",
    AlarmType.ELEVATOR_FAULT.value: "4h", AlarmType.ELEVATOR_DOOR_FAULT.value: "4h",
    AlarmType.GAS_DETECTOR_FAULT.value: "1wd", AlarmType.METER_CONTINUOUS_FLOW.value: "8wh",
    AlarmType.METER_SPIKE.value: "1wd", AlarmType.LOW_BATTERY.value: "2wd", AlarmType.TAMPER.value: "4h",
    SOS_CATEGORY: "15m",
}

_GENERIC = {  # every category: (stage, urgency) -> limit
    (Stage.REGISTER, Urgency.URGENT): "10m", (Stage.REGISTER, Urgency.NORMAL): "30m",
    (Stage.DISPATCH, Urgency.URGENT): "10m", (Stage.DISPATCH, Urgency.NORMAL): "30m",
    (Stage.ACCEPT, Urgency.URGENT): "10m", (Stage.ACCEPT, Urgency.NORMAL): "30m",
    (Stage.VERIFY, Urgency.URGENT): "1h", (Stage.VERIFY, Urgency.NORMAL): "1wh",
    (Stage.CLOSE, Urgency.URGENT): "30m", (Stage.CLOSE, Urgency.NORMAL): "1wh",
}


def default_rows() -> list[LimitRow]:
    """Version 1 of the table: the generic stages for any category, and handling per category."""
    rows = [LimitRow(ANY, stage, urgency.value, Limit.parse(spec)) for (stage, urgency), spec in _GENERIC.items()]
    rows += [LimitRow(category, Stage.HANDLE, ANY, Limit.parse(spec)) for category, spec in HANDLING.items()]
    return rows


def categories() -> list[str]:
    """Every category a case can have: the incident categories, the alarm types, SOS."""
    return [*INCIDENT_CATEGORIES, *(a.value for a in AlarmType), SOS_CATEGORY]


@dataclass(frozen=True)
class LimitTable:
    version: int
    rows: tuple[LimitRow, ...]

    @classmethod
    def defaults(cls) -> LimitTable:
        return cls(1, tuple(default_rows()))

    @classmethod
    def of(cls, version: int, rows: Iterable[LimitRow]) -> LimitTable:
        return cls(version, tuple(rows))

    def limit(self, category: str, stage: Stage, urgency: Urgency) -> Limit:
        """The most specific row: (category, urgency), (category, any), (any, urgency), (any, any)."""
        best, rank = None, -1
        for row in self.rows:
            if row.stage is not stage or row.category not in (category, ANY) or row.urgency not in (urgency.value, ANY):
                continue
            score = (2 if row.category == category else 0) + (1 if row.urgency == urgency.value else 0)
            if score > rank:
                best, rank = row.limit, score
        if best is None:
            raise KeyError(f"no time limit for {category} / {stage.value} / {urgency.value} in version {self.version}")
        return best

    def missing(self) -> list[tuple[str, Stage, Urgency]]:
        """Every (category, stage, urgency) the table has no limit for (an edited table must have none)."""
        gaps = []
        for category in categories():
            for stage in Stage:
                for urgency in Urgency:
                    try:
                        self.limit(category, stage, urgency)
                    except KeyError:
                        gaps.append((category, stage, urgency))
        return gaps

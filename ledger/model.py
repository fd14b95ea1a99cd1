"""What the ledger's store takes and gives in memory: frozen records, who changes them, a history
row, and the one refusal type every ledger write raises.

A resident's ID number and phone are here in clear, in memory only (None when unknown): the store
seals them before they reach the database (ledger.privacy), and hands back history with them sealed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from core.ledger import (
    ChangeAction,
    Channel,
    Gender,
    HouseUse,
    RecordKind,
    Registration,
    Relation,
    Tag,
    ThingKind,
    ThingState,
)


class Refused(ValueError):
    """A ledger write refused, with a reason code a screen or the ingest can branch on
    (`stale_version`, `not_found`, `bad_id_number`, `already_decided`, …) and a specific detail."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Actor:
    """Who changes the ledger and from where: `who` is a member id, a username or a job's name; a
    change from a member's submission names it and the reviewer who approved it."""
    who: str
    channel: Channel
    submission_id: str | None = None
    approved_by: str | None = None


@dataclass(frozen=True)
class House:
    """A house (房屋) in its building: entrance (单元) → floor → number (its grid is its building's)."""
    building_id: str
    entrance: int
    floor: int
    number: str
    use: HouseUse
    area_m2: float | None = None


@dataclass(frozen=True)
class Household:
    """A household (户) in a house, headed by one of its residents (户主) once it has one."""
    house_id: int
    head_id: int | None = None


@dataclass(frozen=True)
class Resident:
    """A resident. `grid_code` may be None when `household_id` is given: the house's grid is theirs."""
    household_id: int | None
    relation: Relation
    name: str
    gender: Gender
    registration: Registration
    birth_date: date | None = None
    id_number: str | None = None          # in clear in memory only
    phone: str | None = None              # in clear in memory only
    moved_in: date | None = None
    moved_out: date | None = None
    tags: frozenset[Tag] = field(default_factory=frozenset)
    grid_code: str | None = None


@dataclass(frozen=True)
class Thing:
    """An urban part (部件) at a point, kept by its owner."""
    thing_id: str
    kind: ThingKind
    grid_code: str
    lon: float
    lat: float
    owner: str
    state: ThingState = ThingState.GOOD
    building_id: str | None = None


@dataclass(frozen=True)
class Shop:
    """A shop or unit (门店/单位): the city's `units` with their ledger fields; the contact's phone is
    personal data like a resident's. `unit_id` None: the store gives it one."""
    grid_code: str
    name: str
    kind: str
    lon: float
    lat: float
    unit_id: str | None = None
    building_id: str | None = None
    licence: str | None = None
    contact_name: str | None = None
    contact_phone: str | None = None      # in clear in memory only
    fire_key_unit: bool = False


@dataclass(frozen=True)
class Change:
    """One row of a record's history: its version after the change, who made it, from where,
    approved by whom, and the record before and after (personal fields sealed, never in clear)."""
    record_kind: RecordKind
    record_id: str
    version: int
    action: ChangeAction
    changed_at: datetime
    changed_by: str
    channel: Channel
    submission_id: str | None
    approved_by: str | None
    before: dict | None
    after: dict | None

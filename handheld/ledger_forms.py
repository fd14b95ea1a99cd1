"""What a member's registration (采集登记) may say, kind by kind: the pure part of the handheld's
ledger endpoint (handheld/ledger.py), tested without a server.

A registration is `{"id", "ts", "kind", "target_kind", "target_id", "fields", "photo_refs"}`
(docs/HANDHELD_API.md, "Registrations"). Every model is strict and closed (an unknown field, a
number as a string, a naive time: refused); names are held to core.freetext's rule for names and
to NAME_MAX characters; an ID number is checked by GB 11643 against the birth date given (a
foreign resident's document number only by its form); a phone by ledger.privacy.check_phone.
`parse(body) -> Submission` or `FormRefused(reason, detail)` naming the field and what is wrong.

What a kind changes is its target, of one record kind (`TARGETS`): a new resident names the house
(and, in its fields, the household it joins, or none for a new household), a shop its building.
The target's id joins the fields under the key the ledger's writer reads it by (`TARGET_KEY`:
`house_id`, `resident_id`, `household_id`, `thing_id`, `building_id`), so a payload says it all.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from core import freetext
from core.city import CITY_TZ
from core.ledger import (
    RESTRICTED_TAGS,
    Gender,
    HouseUse,
    RecordKind,
    Registration,
    Relation,
    SubmissionKind,
    Tag,
    ThingState,
)
from ledger import privacy
from ledger.submissions import DAMAGE_STATES

NAME_MAX = 30                       # a person's or a shop's name, as the ledger keeps it
NOTE_MAX = 500                      # a note to the reviewer
MAX_PHOTOS = 4
PHOTO_REF = re.compile(r"sha256:[0-9a-f]{64}")
_DOCUMENT = re.compile(r"[A-Z0-9]{5,30}")      # a foreign resident's passport or permit number
_LICENCE = re.compile(r"[0-9A-Z]{8,30}")       # 统一社会信用代码 (18) or an older licence number
_EARLIEST = date(1900, 1, 1)

# what each kind changes: the record kind its target must be (none: the kind makes a new record alone)
TARGETS: dict[SubmissionKind, RecordKind] = {
    SubmissionKind.NEW_RESIDENT: RecordKind.HOUSE,
    SubmissionKind.MOVED_OUT: RecordKind.RESIDENT,
    SubmissionKind.HOUSEHOLD_CHANGED: RecordKind.HOUSEHOLD,
    SubmissionKind.HOUSE_USE_CHANGED: RecordKind.HOUSE,
    SubmissionKind.NEW_SHOP: RecordKind.BUILDING,
    SubmissionKind.THING_DAMAGED: RecordKind.THING,
}
# the key under which the ledger's writer (ledger.submissions) finds the target in a submission's fields
TARGET_KEY: dict[RecordKind, str] = {RecordKind.HOUSE: "house_id", RecordKind.RESIDENT: "resident_id",
                                     RecordKind.HOUSEHOLD: "household_id", RecordKind.THING: "thing_id",
                                     RecordKind.BUILDING: "building_id"}
NUMERIC_TARGETS = frozenset({RecordKind.HOUSE, RecordKind.RESIDENT, RecordKind.HOUSEHOLD})


class FormRefused(ValueError):
    """Why a registration is refused: the contract's reason and what was wrong, in words."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _today() -> date:
    return datetime.now(CITY_TZ).date()


def _name(value: str) -> str:
    text = value.strip()
    if not text:
        raise ValueError("is required")
    wrong = freetext.problem(text, freetext.NAME)
    if wrong:
        raise ValueError(wrong)
    if len(text) > NAME_MAX:
        raise ValueError(f"has {len(text)} characters, at most {NAME_MAX} are allowed")
    return text


def _note(value: str) -> str:
    text = value.replace("\r\n", "\n").strip()
    wrong = freetext.problem(text, freetext.Kind("note", NOTE_MAX, multiline=True))
    if wrong:
        raise ValueError(wrong)
    return text


def _past(value: date) -> date:
    """A date that has happened (a day of slack: the phone's calendar may be ahead of the city's)."""
    if value < _EARLIEST or value > _today() + timedelta(days=1):
        raise ValueError(f"{value.isoformat()} is not a date between {_EARLIEST.isoformat()} and today")
    return value


def _phone(value: str) -> str:
    text = privacy.normalize_phone(value)
    wrong = privacy.check_phone(text)
    if wrong:
        raise ValueError(wrong)
    return text


def _licence(value: str) -> str:
    text = "".join(value.split()).upper()
    if not _LICENCE.fullmatch(text):
        raise ValueError("a licence number is 8 to 30 digits and capital letters")
    return text


Name = Annotated[str, AfterValidator(_name)]
Note = Annotated[str, AfterValidator(_note)]
PastDate = Annotated[date, AfterValidator(_past)]
Phone = Annotated[str, AfterValidator(_phone)]


class _Form(BaseModel):
    # strict, validated from JSON: a date, a time, an id, a word arrive as strings, nothing else does
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NewResident(_Form):
    """新增人口: a resident in the target house, joining `household_id` (of that house) or a new household."""
    household_id: int | None = Field(None, ge=1)
    name: Name
    gender: Gender
    birth_date: PastDate
    id_number: str | None = None
    phone: Phone | None = None
    registration: Registration
    relation: Relation
    moved_in: PastDate | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=len(Tag))

    @model_validator(mode="after")
    def _checked(self) -> NewResident:
        if self.id_number is not None:
            object.__setattr__(self, "id_number", self._id_number(self.id_number))
        restricted = sorted(set(self.tags) & RESTRICTED_TAGS)
        if restricted:
            raise ValueError(f"tags: {', '.join(restricted)} are restricted and not registered from the handheld")
        if len(set(self.tags)) != len(self.tags):
            raise ValueError("tags: a tag is given twice")
        if self.moved_in is not None and self.moved_in < self.birth_date:
            raise ValueError("moved_in: before the birth date")
        return self

    def _id_number(self, value: str) -> str:
        text = privacy.normalize_id_number(value)
        if self.registration is Registration.FOREIGN:
            if not _DOCUMENT.fullmatch(text):
                raise ValueError("id_number: a document number is 5 to 30 digits and capital letters")
            return text
        wrong = privacy.check_id_number(text, self.birth_date)
        if wrong:
            raise ValueError(f"id_number: {wrong}")
        return text


class MovedOut(_Form):
    """人口迁出: the target resident left on `moved_out`."""
    moved_out: PastDate


class HouseholdChanged(_Form):
    """户信息变更: the target household's new head, and/or its residents' relations to the head
    (by resident id: each must be of that household)."""
    head_id: int | None = Field(None, ge=1)
    relations: dict[Annotated[str, Field(pattern=r"^[1-9][0-9]{0,17}$")], Relation] | None = Field(None, max_length=30)

    @model_validator(mode="after")
    def _checked(self) -> HouseholdChanged:
        if self.head_id is None and not self.relations:
            raise ValueError("a household change names a new head_id or relations")
        return self

    def residents(self) -> set[int]:
        """The residents it names (all must live in the target household)."""
        return {int(key) for key in self.relations or {}} | ({self.head_id} if self.head_id else set())


class HouseUseChanged(_Form):
    """房屋用途变更: the target house's use now (and its area, when measured)."""
    use: HouseUse
    area_m2: float | None = Field(None, gt=0, lt=100_000)


class NewShop(_Form):
    """新增门店: a shop or unit in the target building (its position: the phone's, else the building's)."""
    name: Name
    kind: Name
    licence: Annotated[str, AfterValidator(_licence)] | None = None
    contact_name: Name | None = None
    contact_phone: Phone | None = None
    fire_key_unit: bool = False
    lon: float | None = Field(None, ge=-180, le=180)
    lat: float | None = Field(None, ge=-90, le=90)


class ThingDamaged(_Form):
    """部件损坏: the target part's state as found, and what the member saw."""
    state: ThingState
    note: Note | None = None

    @model_validator(mode="after")
    def _checked(self) -> ThingDamaged:
        if self.state not in DAMAGE_STATES:
            raise ValueError(f"state: a damage report's state is {' or '.join(sorted(DAMAGE_STATES))}")
        return self


FORMS: dict[SubmissionKind, type[_Form]] = {
    SubmissionKind.NEW_RESIDENT: NewResident, SubmissionKind.MOVED_OUT: MovedOut,
    SubmissionKind.HOUSEHOLD_CHANGED: HouseholdChanged, SubmissionKind.HOUSE_USE_CHANGED: HouseUseChanged,
    SubmissionKind.NEW_SHOP: NewShop, SubmissionKind.THING_DAMAGED: ThingDamaged,
}


class _Envelope(_Form):
    id: uuid.UUID = ...
    ts: AwareDatetime = ...
    kind: SubmissionKind = ...
    target_kind: RecordKind | None = None
    target_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")] | None = None
    fields: dict[str, Any]
    photo_refs: list[Annotated[str, Field(pattern=PHOTO_REF.pattern)]] = Field(default_factory=list,
                                                                                max_length=MAX_PHOTOS)


@dataclass(frozen=True)
class Submission:
    """A registration as validated: its fields JSON-ready (dates as ISO strings), personal ones in clear
    (normalized) until ledger.submissions seals them."""
    submission_id: uuid.UUID
    submitted_at: datetime
    kind: SubmissionKind
    target_kind: RecordKind
    target_id: str
    fields: dict[str, Any]
    photo_refs: list[str]
    named: frozenset[int] = frozenset()     # residents a household change names (of its household)


def _words(error: ValidationError, prefix: str = "") -> str:
    """The validation's first problem, as `field: what is wrong` (never the value: it may be an ID number)."""
    first = error.errors(include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    return f"{prefix}{where}: {message}" if where else f"{prefix}{message}"


def parse(body: bytes) -> Submission:
    """A registration from the phone's JSON body, or FormRefused: `bad_json`, `bad_submission` (the
    envelope), `bad_target` (none, or one of the wrong record kind for the kind), `bad_fields` (the
    kind's fields). Validated from JSON, strictly: a string is never taken for a number, nor 1 for True."""
    try:
        envelope = _Envelope.model_validate_json(body)
    except ValidationError as wrong:
        if wrong.errors()[0]["type"] == "json_invalid":
            raise FormRefused("bad_json", "the body is not JSON") from None
        if wrong.errors()[0]["type"] == "model_type":
            raise FormRefused("bad_submission", "a registration is a JSON object") from None
        raise FormRefused("bad_submission", _words(wrong)) from None
    wanted = TARGETS[envelope.kind]
    if envelope.target_kind is not wanted or envelope.target_id is None:
        raise FormRefused("bad_target", f"a {envelope.kind.value} names a {wanted.value} (target_kind, target_id)")
    if wanted in NUMERIC_TARGETS and not envelope.target_id.isdigit():
        raise FormRefused("bad_target", f"a {wanted.value}'s id is a number")
    try:
        form = FORMS[envelope.kind].model_validate_json(orjson.dumps(envelope.fields))
    except ValidationError as wrong:
        raise FormRefused("bad_fields", _words(wrong, "fields.")) from None
    target = int(envelope.target_id) if wanted in NUMERIC_TARGETS else envelope.target_id
    fields = {**form.model_dump(mode="json", exclude_none=True), TARGET_KEY[wanted]: target}
    named = frozenset(form.residents()) if isinstance(form, HouseholdChanged) else frozenset()
    return Submission(envelope.id, envelope.ts, envelope.kind, wanted, envelope.target_id, fields,
                      list(envelope.photo_refs), named)

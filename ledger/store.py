"""The ledger's store: cursor-level writes of houses, households, residents, parts and shops, each
with its history row.

Every function runs in the caller's transaction (a screen adds its audit row in the same one, the
review marks its submission decided in the same one). Every change bumps the record's `version` and
writes one `ledger_changes` row: who, from which channel, from which submission, approved by whom,
and the record before and after. Personal fields (an ID number, a phone) appear there only in the
JSON form `Sealer.sealed_field` gives ({"sealed", "index", "masked"}): the history can be audited
without revealing them. A stale `expected_version` is refused (`Refused("stale_version")`): two
reviewers on one record, the first one's change wins and the second sees it.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import date

from psycopg2.extras import Json

from core import freetext
from core.ledger import (
    ChangeAction,
    Channel,
    Gender,
    HouseUse,
    RecordKind,
    Registration,
    Relation,
    Tag,
    ThingState,
)
from ledger import privacy
from ledger.model import Actor, Change, House, Refused, Resident, Shop, Thing
from ledger.privacy import ID_NUMBER, PHONE, Sealer

_DOCUMENT = re.compile(r"[A-Z0-9]{5,30}")      # a foreigner's passport or permit number (as handheld.ledger_forms)


def _sealed_json(column: str) -> str:
    """SQL: a sealed column's triple as `Sealer.sealed_field` gives it (base64 without line breaks)."""
    return (f"case when {column}_sealed is null then null else jsonb_build_object("
            f"'sealed', translate(encode({column}_sealed, 'base64'), E'\\n', ''), "
            f"'index', encode({column}_index, 'hex'), 'masked', {column}_masked) end")


_RESIDENT_JSON = (
    "jsonb_build_object('household_id', household_id, 'grid_code', grid_code, 'relation', relation, 'name', name, "
    "'gender', gender, 'birth_date', birth_date, 'registration', registration, 'moved_in', moved_in, "
    f"'moved_out', moved_out, 'id_number', {_sealed_json('id_number')}, 'phone', {_sealed_json('phone')}, "
    "'tags', coalesce((select jsonb_agg(t.tag order by t.tag) from resident_tags t "
    "where t.resident_id = r.resident_id), '[]'::jsonb))")
_UNIT_JSON = (
    "jsonb_build_object('grid_code', grid_code, 'name', name, 'kind', kind, 'lon', lon, 'lat', lat, "
    "'building_id', building_id, 'licence', licence, 'contact_name', contact_name, "
    f"'contact_phone', {_sealed_json('contact_phone')}, 'fire_key_unit', fire_key_unit)")
_THING_JSON = ("jsonb_build_object('kind', kind, 'grid_code', grid_code, 'building_id', building_id, "
               "'lon', ST_X(position), 'lat', ST_Y(position), 'owner', owner, 'state', state)")
# record kind -> (table, key column, its JSON for the history)
_RECORDS: dict[RecordKind, tuple[str, str, str]] = {
    RecordKind.HOUSE: ("houses", "house_id", "to_jsonb(r) - 'version' - 'house_id'"),
    RecordKind.HOUSEHOLD: ("households", "household_id", "to_jsonb(r) - 'version' - 'household_id'"),
    RecordKind.RESIDENT: ("residents", "resident_id", _RESIDENT_JSON),
    RecordKind.THING: ("things", "thing_id", _THING_JSON),
    RecordKind.UNIT: ("units", "unit_id", _UNIT_JSON),
}
# what a deleted resident's history keeps no more (PIPL: the deletion deletes the person)
PERSONAL_KEYS = ("name", "birth_date", "id_number", "phone", "tags")


# --- history ------------------------------------------------------------------------------------
def _snapshot(cur, kind: RecordKind, record_id, lock: bool = False) -> tuple[int, dict]:
    """A record's version and its JSON for the history (locked for the change when `lock`)."""
    table, key, as_json = _RECORDS[kind]
    cur.execute(f"select version, {as_json} from {table} r where {key} = %s{' for update' if lock else ''}",
                (record_id,))
    row = cur.fetchone()
    if row is None:
        raise Refused("not_found", f"no {kind.value} {record_id} in the ledger")
    return row[0], row[1]


def _log(cur, kind: RecordKind, record_id, version: int, action: ChangeAction, actor: Actor,
         before: dict | None, after: dict | None) -> None:
    cur.execute(
        "insert into ledger_changes (record_kind, record_id, version, action, changed_by, channel, submission_id,"
        " approved_by, before, after) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (kind.value, str(record_id), version, action.value, actor.who, actor.channel.value, actor.submission_id,
         actor.approved_by, Json(before) if before is not None else None, Json(after) if after is not None else None))


def _created(cur, kind: RecordKind, record_id, actor: Actor) -> None:
    """The history's first row of a record just inserted (version 1)."""
    version, after = _snapshot(cur, kind, record_id)
    _log(cur, kind, record_id, version, ChangeAction.CREATE, actor, None, after)


def _changed(cur, kind: RecordKind, record_id, actor: Actor, expected_version: int | None,
             write: Callable[[], None]) -> int:
    """Lock the record, refuse a stale `expected_version`, run `write`, bump the version and log the
    change before → after. Returns the new version."""
    version, before = _snapshot(cur, kind, record_id, lock=True)
    if expected_version is not None and expected_version != version:
        raise Refused("stale_version", f"{kind.value} {record_id} is at version {version}, not {expected_version}:"
                                       " someone changed it first; look again")
    write()
    table, key, _ = _RECORDS[kind]
    cur.execute(f"update {table} set version = version + 1 where {key} = %s returning version", (record_id,))
    new_version = cur.fetchone()[0]
    _, after = _snapshot(cur, kind, record_id)
    _log(cur, kind, record_id, new_version, ChangeAction.UPDATE, actor, before, after)
    return new_version


def history(cur, record_kind: RecordKind, record_id) -> list[Change]:
    """A record's changes, oldest first (personal fields sealed as they were stored)."""
    cur.execute("select record_kind, record_id, version, action, changed_at, changed_by, channel, submission_id,"
                " approved_by, before, after from ledger_changes where record_kind = %s and record_id = %s"
                " order by version", (RecordKind(record_kind).value, str(record_id)))
    return [Change(RecordKind(r[0]), r[1], r[2], ChangeAction(r[3]), r[4], r[5], Channel(r[6]),
                   str(r[7]) if r[7] else None, r[8], r[9], r[10]) for r in cur.fetchall()]


# --- values at the door -------------------------------------------------------------------------
def as_enum(kind, value, field: str):
    """`value` as a word of the vocabulary `kind`, or Refused("bad_value") listing the words."""
    try:
        return kind(value)
    except ValueError:
        raise Refused("bad_value", f"{field} {value!r} is not one of {', '.join(kind)}") from None


def as_date(value, field: str) -> date | None:
    """`value` (a date, YYYY-MM-DD or None) as a date, or Refused("bad_value")."""
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise Refused("bad_value", f"{field} {value!r} is not a date (YYYY-MM-DD)") from None


def as_text(value, kind: freetext.Kind, field: str, required: bool = True) -> str | None:
    """`value` trimmed as a free-text field of `kind` (core.freetext), or Refused("bad_value")."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise Refused("bad_value", f"{field} must be text")
    problem = freetext.problem(value, kind)
    if problem or (required and not value.strip()):
        raise Refused("bad_value", f"{field}: {problem or 'required'}")
    return value.strip() or None


def checked_id_number(text: str, birth_date: date | None, registration: Registration) -> str:
    """An ID number normalized, or Refused("bad_id_number") saying why: a mainland resident ID (GB
    11643, against the birth date); a foreigner's document number is 5 to 30 letters and digits."""
    number = privacy.normalize_id_number(text)
    if registration is Registration.FOREIGN and _DOCUMENT.fullmatch(number):
        return number
    problem = privacy.check_id_number(number, birth_date)
    if problem:
        raise Refused("bad_id_number", problem)
    return number


def checked_phone(text: str) -> str:
    """A phone normalized, or Refused("bad_phone") saying why."""
    phone = privacy.normalize_phone(text)
    problem = privacy.check_phone(phone)
    if problem:
        raise Refused("bad_phone", problem)
    return phone


def _sealed_columns(sealer: Sealer, field: str, column: str, text: str | None) -> dict:
    """A personal value as its three columns (sealed, keyed index, mask), all None when unknown."""
    if text is None:
        return {f"{column}_sealed": None, f"{column}_index": None, f"{column}_masked": None}
    return {f"{column}_sealed": sealer.seal(field, text), f"{column}_index": sealer.index(field, text),
            f"{column}_masked": privacy.MASKS[field](text)}


def _grid_of_household(cur, household_id: int) -> str:
    cur.execute("select h.grid_code from households hh join houses h using (house_id) where hh.household_id = %s",
                (household_id,))
    row = cur.fetchone()
    if row is None:
        raise Refused("not_found", f"no household {household_id} in the ledger")
    return row[0]


# --- places ---------------------------------------------------------------------------------------
def add_house(cur, house: House, actor: Actor) -> int:
    """A new house in its building (the building's grid is its own); Refused when the building is
    unknown or the entrance already has that door number."""
    use = as_enum(HouseUse, house.use, "use")
    number = as_text(house.number, freetext.NAME, "number")
    cur.execute("select 1 from houses where building_id = %s and entrance = %s and number = %s",
                (house.building_id, house.entrance, number))
    if cur.fetchone():
        raise Refused("duplicate_house", f"{house.building_id} entrance {house.entrance} already has house {number}")
    cur.execute("insert into houses (building_id, grid_code, entrance, floor, number, area_m2, use)"
                " select building_id, grid_code, %s, %s, %s, %s, %s from buildings where building_id = %s"
                " returning house_id",
                (house.entrance, house.floor, number, house.area_m2, use.value, house.building_id))
    row = cur.fetchone()
    if row is None:
        raise Refused("not_found", f"no building {house.building_id}")
    _created(cur, RecordKind.HOUSE, row[0], actor)
    return row[0]


def set_house_use(cur, house_id: int, use: HouseUse, actor: Actor, expected_version: int | None = None,
                  area_m2: float | None = None) -> int:
    """A house's use (and, given, its area) changed; returns its new version."""
    use = as_enum(HouseUse, use, "use")
    if area_m2 is not None and not (isinstance(area_m2, int | float) and area_m2 > 0):
        raise Refused("bad_value", f"area {area_m2!r} must be a positive number of m²")
    return _changed(cur, RecordKind.HOUSE, house_id, actor, expected_version, lambda: cur.execute(
        "update houses set use = %s, area_m2 = coalesce(%s, area_m2) where house_id = %s",
        (use.value, area_m2, house_id)))


# --- people ---------------------------------------------------------------------------------------
def add_household(cur, house_id: int, actor: Actor) -> int:
    """A new household (no head yet: `set_head` once its first resident is in)."""
    cur.execute("insert into households (house_id) select house_id from houses where house_id = %s"
                " returning household_id", (house_id,))
    row = cur.fetchone()
    if row is None:
        raise Refused("not_found", f"no house {house_id} in the ledger")
    _created(cur, RecordKind.HOUSEHOLD, row[0], actor)
    return row[0]


def set_head(cur, household_id: int, resident_id: int, actor: Actor, expected_version: int | None = None) -> int:
    """A household's head (户主): one of its own residents."""
    cur.execute("select household_id from residents where resident_id = %s", (resident_id,))
    row = cur.fetchone()
    if row is None or row[0] != household_id:
        raise Refused("not_in_household", f"resident {resident_id} is not in household {household_id}")
    return _changed(cur, RecordKind.HOUSEHOLD, household_id, actor, expected_version, lambda: cur.execute(
        "update households set head_id = %s where household_id = %s", (resident_id, household_id)))


def _write_tags(cur, resident_id: int, tags) -> None:
    wanted = sorted({as_enum(Tag, t, "tag").value for t in tags})
    cur.execute("delete from resident_tags where resident_id = %s and tag <> all(%s)", (resident_id, wanted))
    cur.execute("insert into resident_tags (resident_id, tag, since) select %s, unnest(%s::text[]), current_date"
                " on conflict do nothing", (resident_id, wanted))


def _resident_columns(sealer: Sealer, r: Resident) -> dict:
    """A new resident's columns, checked (Refused saying which value is wrong) and sealed."""
    registration = as_enum(Registration, r.registration, "registration")
    birth_date = as_date(r.birth_date, "birth_date")
    id_number = None if r.id_number is None else checked_id_number(r.id_number, birth_date, registration)
    phone = None if r.phone is None else checked_phone(r.phone)
    moved_in, moved_out = as_date(r.moved_in, "moved_in"), as_date(r.moved_out, "moved_out")
    if moved_in and moved_out and moved_out < moved_in:
        raise Refused("bad_value", f"moved out {moved_out} before moving in {moved_in}")
    return {"household_id": r.household_id, "relation": as_enum(Relation, r.relation, "relation").value,
            "name": as_text(r.name, freetext.NAME, "name"), "gender": as_enum(Gender, r.gender, "gender").value,
            "birth_date": birth_date, "registration": registration.value, "moved_in": moved_in,
            "moved_out": moved_out, **_sealed_columns(sealer, ID_NUMBER, "id_number", id_number),
            **_sealed_columns(sealer, PHONE, "phone", phone)}


def add_resident(cur, sealer: Sealer, resident: Resident, actor: Actor) -> int:
    """A new resident, sealed and masked, in their household's grid (or `resident.grid_code` when
    they have no household); their tags with them."""
    columns = _resident_columns(sealer, resident)
    if resident.household_id is not None:
        columns["grid_code"] = _grid_of_household(cur, resident.household_id)
    elif resident.grid_code:
        columns["grid_code"] = resident.grid_code
    else:
        raise Refused("bad_value", "a resident without a household needs a grid_code")
    cur.execute(f"insert into residents ({', '.join(columns)}) values ({', '.join(['%s'] * len(columns))})"
                " returning resident_id", list(columns.values()))
    resident_id = cur.fetchone()[0]
    _write_tags(cur, resident_id, resident.tags)
    _created(cur, RecordKind.RESIDENT, resident_id, actor)
    return resident_id


RESIDENT_FIELDS = frozenset({"household_id", "relation", "name", "gender", "birth_date", "id_number", "phone",
                             "registration", "moved_in", "moved_out", "tags"})


def _resident_changes(cur, sealer: Sealer | None, resident_id: int, changes: dict) -> tuple[dict, object]:
    """The columns an update writes (checked and sealed) and its tags (None: unchanged). An ID number
    is checked against the birth date, the stored one's when not given (opened to check it again
    when the birth date or the registration changes)."""
    unknown = set(changes) - RESIDENT_FIELDS
    if unknown:
        raise Refused("bad_value", f"a resident has no field {', '.join(sorted(unknown))}")
    cur.execute("select birth_date, registration, id_number_sealed, moved_in, moved_out from residents"
                " where resident_id = %s", (resident_id,))
    row = cur.fetchone()
    if row is None:
        raise Refused("not_found", f"no resident {resident_id} in the ledger")
    birth_date = as_date(changes.get("birth_date", row[0]), "birth_date")
    registration = as_enum(Registration, changes.get("registration", row[1]), "registration")
    columns: dict = {}
    for key in ("relation", "gender"):
        if key in changes:
            columns[key] = as_enum(Relation if key == "relation" else Gender, changes[key], key).value
    if "name" in changes:
        columns["name"] = as_text(changes["name"], freetext.NAME, "name")
    for key in ("birth_date", "moved_in", "moved_out"):
        if key in changes:
            columns[key] = as_date(changes[key], key)
    moved_in, moved_out = columns.get("moved_in", row[3]), columns.get("moved_out", row[4])
    if moved_in and moved_out and moved_out < moved_in:
        raise Refused("bad_value", f"moved out {moved_out} before moving in {moved_in}")
    if "registration" in changes:
        columns["registration"] = registration.value
    if "household_id" in changes:
        cur.execute("select household_id from households where head_id = %s and household_id is distinct from %s",
                    (resident_id, changes["household_id"]))
        headed = cur.fetchone()
        if headed:
            raise Refused("is_head", f"resident {resident_id} heads household {headed[0]}: give it another head first")
        columns["household_id"] = changes["household_id"]
        columns["grid_code"] = _grid_of_household(cur, changes["household_id"])
    if "id_number" in changes or (row[2] is not None and {"birth_date", "registration"} & set(changes)):
        if sealer is None:
            raise Refused("bad_value", "changing an ID number or what it is checked against needs the ledger key")
        text = changes["id_number"] if "id_number" in changes else sealer.open(ID_NUMBER, row[2])
        number = None if text is None else checked_id_number(text, birth_date, registration)
        columns.update(_sealed_columns(sealer, ID_NUMBER, "id_number", number))
    if "phone" in changes:
        if sealer is None:
            raise Refused("bad_value", "changing a phone needs the ledger key")
        phone = None if changes["phone"] is None else checked_phone(changes["phone"])
        columns.update(_sealed_columns(sealer, PHONE, "phone", phone))
    return columns, changes.get("tags")


def update_resident(cur, sealer: Sealer | None, resident_id: int, changes: dict, actor: Actor,
                    expected_version: int | None = None) -> int:
    """A resident's fields changed (keys of RESIDENT_FIELDS; values as a form or a payload gives them:
    words, dates as YYYY-MM-DD, ID number and phone in clear); returns the new version."""
    def write() -> None:
        columns, tags = _resident_changes(cur, sealer, resident_id, changes)
        if columns:
            cur.execute(f"update residents set {', '.join(f'{c} = %s' for c in columns)} where resident_id = %s",
                        (*columns.values(), resident_id))
        if tags is not None:
            _write_tags(cur, resident_id, tags)
    return _changed(cur, RecordKind.RESIDENT, resident_id, actor, expected_version, write)


def move_out(cur, resident_id: int, on: date, actor: Actor, expected_version: int | None = None) -> int:
    """A resident moved out on `on`: kept until the deletion job's day (`delete_moved_out`)."""
    return update_resident(cur, None, resident_id, {"moved_out": on}, actor, expected_version)


def set_tags(cur, resident_id: int, tags, actor: Actor, expected_version: int | None = None) -> int:
    """A resident's tags, all of them (those not given are taken off)."""
    return update_resident(cur, None, resident_id, {"tags": frozenset(tags)}, actor, expected_version)


def delete_moved_out(cur, before: date, actor: Actor) -> int:
    """The deletion job's core: every resident who moved out before `before` is deleted with their
    tags, a household they headed loses its head (a change of its own), their history keeps no
    personal data (PERSONAL_KEYS removed from before/after, marked {"erased": true}), the payloads of
    the submissions that made them are erased, and each gets a 'delete' change. One set-based
    statement (indexes: residents' moved_out, the history's record key): fine at millions of rows.
    Returns how many residents were deleted."""
    params = {"before": before, "who": actor.who, "channel": actor.channel.value, "resident": RecordKind.RESIDENT.value,
              "household": RecordKind.HOUSEHOLD.value, "delete": ChangeAction.DELETE.value,
              "update": ChangeAction.UPDATE.value, "personal": list(PERSONAL_KEYS)}
    erase = "case when {0} is null then null else ({0} - %(personal)s::text[]) || '{{\"erased\": true}}' end"
    cur.execute(f"""
        with gone as (
            delete from residents where moved_out < %(before)s
            returning resident_id, household_id, grid_code, moved_out, version),
        heads as (
            update households h set head_id = null, version = h.version + 1 from gone
            where h.head_id = gone.resident_id returning h.household_id, h.version, gone.resident_id as was_head),
        scrubbed as (
            update ledger_changes c set before = {erase.format('c.before')}, after = {erase.format('c.after')}
            from gone where c.record_kind = %(resident)s and c.record_id = gone.resident_id::text returning 1),
        unsent as (
            update ledger_submissions s set payload = '{{"erased": true}}' from gone
            where s.target_kind = %(resident)s and s.target_id = gone.resident_id::text returning 1),
        deleted as (
            insert into ledger_changes (record_kind, record_id, version, action, changed_by, channel, before, after)
            select %(resident)s, resident_id::text, version + 1, %(delete)s, %(who)s, %(channel)s,
                   jsonb_build_object('erased', true, 'household_id', household_id, 'grid_code', grid_code,
                                      'moved_out', moved_out), null from gone returning 1),
        headless as (
            insert into ledger_changes (record_kind, record_id, version, action, changed_by, channel, before, after)
            select %(household)s, household_id::text, version, %(update)s, %(who)s, %(channel)s,
                   jsonb_build_object('head_id', was_head), jsonb_build_object('head_id', null) from heads
            returning 1)
        select (select count(*) from gone), (select count(*) from scrubbed), (select count(*) from unsent),
               (select count(*) from deleted), (select count(*) from headless)""", params)
    return cur.fetchone()[0]


# --- things and shops ----------------------------------------------------------------------------
def add_thing(cur, thing: Thing, actor: Actor) -> str:
    """A new urban part at its point."""
    cur.execute("insert into things (thing_id, kind, grid_code, building_id, position, owner, state)"
                " values (%s, %s, %s, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326), %s, %s) on conflict do nothing"
                " returning thing_id",
                (as_text(thing.thing_id, freetext.NAME, "thing_id"), thing.kind.value, thing.grid_code,
                 thing.building_id, thing.lon, thing.lat, as_text(thing.owner, freetext.NAME, "owner"),
                 thing.state.value))
    if cur.fetchone() is None:
        raise Refused("duplicate_thing", f"part {thing.thing_id} is already in the ledger")
    _created(cur, RecordKind.THING, thing.thing_id, actor)
    return thing.thing_id


def set_thing_state(cur, thing_id: str, state: ThingState, actor: Actor, expected_version: int | None = None) -> int:
    """A part's state (good, damaged, missing, under repair); returns its new version."""
    state = as_enum(ThingState, state, "state")
    return _changed(cur, RecordKind.THING, thing_id, actor, expected_version, lambda: cur.execute(
        "update things set state = %s where thing_id = %s", (state.value, thing_id)))


def add_unit(cur, sealer: Sealer, shop: Shop, actor: Actor) -> str:
    """A new shop or unit (门店/单位) with its ledger fields, the contact's phone sealed; returns its id."""
    if not (-180 <= shop.lon <= 180 and -90 <= shop.lat <= 90):
        raise Refused("bad_value", f"({shop.lon}, {shop.lat}) is not a longitude and latitude")
    unit_id = shop.unit_id or f"unit-{uuid.uuid4().hex[:12]}"
    phone = None if shop.contact_phone is None else checked_phone(shop.contact_phone)
    columns = {"unit_id": unit_id, "grid_code": shop.grid_code, "name": as_text(shop.name, freetext.NAME, "name"),
               "kind": as_text(shop.kind, freetext.NAME, "kind"), "lon": shop.lon, "lat": shop.lat,
               "building_id": shop.building_id, "licence": as_text(shop.licence, freetext.NAME, "licence", False),
               "contact_name": as_text(shop.contact_name, freetext.NAME, "contact_name", False),
               "fire_key_unit": bool(shop.fire_key_unit), **_sealed_columns(sealer, PHONE, "contact_phone", phone)}
    cur.execute(f"insert into units ({', '.join(columns)}) values ({', '.join(['%s'] * len(columns))})"
                " on conflict do nothing returning unit_id", list(columns.values()))
    if cur.fetchone() is None:
        raise Refused("duplicate_unit", f"unit {unit_id} is already in the ledger")
    _created(cur, RecordKind.UNIT, unit_id, actor)
    return unit_id

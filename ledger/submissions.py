"""The review queue on the database: what members register from the handheld (采集登记) waits here,
per community, until a reviewer approves it (as submitted or edited) or sends it back.

`submit` stores a submission once (its id is the message's own: sent twice, kept once), with its
personal fields sealed (`Sealer.sealed_field`) and its possible duplicates flagged, never refused.
`approve` applies the change through ledger.store in the reviewer's transaction (channel handheld,
changed by the member, approved by the reviewer, the submission named) and marks it approved in
the same one; `send_back` marks it returned with the reason. The decision itself is ledger.review's
pure state machine; its refusals are raised as `Refused(code, detail)`.

Payload `fields` per kind are the issue's (see FIELDS); ids may come as ints or digit strings; a new
shop naming its building may leave lon/lat out (the building's point).
"""
from __future__ import annotations

import uuid
from datetime import datetime

from psycopg2.extras import Json, RealDictCursor

from core import freetext
from core.ledger import (
    Channel,
    Gender,
    HouseUse,
    RecordKind,
    Registration,
    Relation,
    SubmissionKind,
    SubmissionState,
    Tag,
    ThingState,
)
from core.orgcodes import contains
from ledger import privacy, review, store
from ledger.model import Actor, Refused, Resident, Shop
from ledger.privacy import ID_NUMBER, PHONE, Sealer

# kind -> (required keys, optional keys) of its fields
FIELDS: dict[SubmissionKind, tuple[frozenset[str], frozenset[str]]] = {
    SubmissionKind.NEW_RESIDENT: (frozenset({"house_id", "relation", "name", "gender", "birth_date", "registration"}),
                                  frozenset({"household_id", "id_number", "phone", "moved_in", "tags"})),
    SubmissionKind.MOVED_OUT: (frozenset({"resident_id", "moved_out"}), frozenset()),
    SubmissionKind.HOUSEHOLD_CHANGED: (frozenset({"household_id"}), frozenset({"head_id", "relations"})),
    SubmissionKind.HOUSE_USE_CHANGED: (frozenset({"house_id", "use"}), frozenset({"area_m2"})),
    SubmissionKind.NEW_SHOP: (frozenset({"name", "kind"}), frozenset({"building_id", "licence", "contact_name",
                                                                   "contact_phone", "fire_key_unit", "lon", "lat"})),
    SubmissionKind.THING_DAMAGED: (frozenset({"thing_id", "state"}), frozenset({"note"})),
}
# kind -> its personal fields and the privacy field each is sealed as
PERSONAL: dict[SubmissionKind, dict[str, str]] = {
    SubmissionKind.NEW_RESIDENT: {"id_number": ID_NUMBER, "phone": PHONE},
    SubmissionKind.NEW_SHOP: {"contact_phone": PHONE},
}
DAMAGE_STATES = frozenset({ThingState.DAMAGED, ThingState.MISSING})
MAX_QUEUE = 500
REVIEWER_EDITS = "reviewer_edits"     # an approved payload keeps what the reviewer changed, sealed alike


def _uuid(value) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise Refused("bad_value", f"submission id {value!r} is not a UUID") from None


def _int(value, field: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise Refused("bad_value", f"{field} {value!r} is not a ledger id")


def _checked_keys(kind: SubmissionKind, fields, edit: bool = False) -> None:
    """Refused("bad_payload") naming the missing or unknown keys (an edit may give any subset)."""
    if not isinstance(fields, dict):
        raise Refused("bad_payload", f"a {kind.value} submission's fields are an object")
    required, optional = FIELDS[kind]
    unknown, missing = set(fields) - required - optional, set() if edit else required - set(fields)
    if unknown or missing:
        raise Refused("bad_payload", f"{kind.value}: " + "; ".join(
            part for part in (missing and f"missing {', '.join(sorted(missing))}",
                              unknown and f"unknown {', '.join(sorted(unknown))}") if part))


_WORDS = {"relation": Relation, "gender": Gender, "registration": Registration, "use": HouseUse, "state": ThingState}
_DATES = frozenset({"birth_date", "moved_in", "moved_out"})
_IDS = frozenset({"house_id", "household_id", "resident_id", "head_id"})
_NUMBERS = frozenset({"lon", "lat", "area_m2"})
_TEXTS = {"name": freetext.NAME, "kind": freetext.NAME, "licence": freetext.NAME, "contact_name": freetext.NAME,
          "building_id": freetext.NAME, "thing_id": freetext.NAME, "note": freetext.NOTE}


def _checked_value(key: str, value) -> None:
    """Refused naming `key` when its value is not of its form (a word, a date, an id, a number, text)."""
    if key in _WORDS:
        store.as_enum(_WORDS[key], value, key)
    elif key in _DATES:
        store.as_date(value, key)
    elif key in _IDS:
        _int(value, key)
    elif key in _NUMBERS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Refused("bad_value", f"{key} {value!r} is not a number")
    elif key in _TEXTS:
        store.as_text(value, _TEXTS[key], key)
    elif key == "tags":
        if not isinstance(value, list):
            raise Refused("bad_value", "tags are a list")
        for tag in value:
            store.as_enum(Tag, tag, "tag")
    elif key == "relations":
        if not isinstance(value, dict):
            raise Refused("bad_value", "relations map resident ids to relations")
        for resident_id, relation in value.items():
            _int(resident_id, "resident id")
            store.as_enum(Relation, relation, "relation")


def _checked_values(kind: SubmissionKind, fields: dict) -> None:
    """Every value of a submission (or a reviewer's edit) of its form, the required ones given:
    Refused naming the first that is not, before anything is stored or applied."""
    required, _ = FIELDS[kind]
    for key, value in fields.items():
        if value is None:
            if key in required:
                raise Refused("bad_payload", f"{kind.value}: {key} is required")
        elif key not in PERSONAL.get(kind, {}):
            _checked_value(key, value)
    if kind is SubmissionKind.THING_DAMAGED and "state" in fields and ThingState(fields["state"]) not in DAMAGE_STATES:
        raise Refused("bad_value", f"a damage report's state is {' or '.join(sorted(DAMAGE_STATES))}")


def _sealed(sealer: Sealer, kind: SubmissionKind, fields: dict, context: dict) -> dict:
    """`fields` with their personal values checked, normalized and sealed; `context` gives what an ID
    number is checked against (the birth date, the registration)."""
    out = dict(fields)
    for key, field in PERSONAL.get(kind, {}).items():
        text = out.get(key)
        if text is None:
            continue
        if not isinstance(text, str):
            raise Refused("bad_payload", f"{key} must be text")
        if field == ID_NUMBER:
            text = store.checked_id_number(text, store.as_date(context.get("birth_date"), "birth_date"),
                                           store.as_enum(Registration, context.get("registration"), "registration"))
        else:
            text = store.checked_phone(text)
        out[key] = sealer.sealed_field(field, text)
    return out


def _opened(sealer: Sealer, kind: SubmissionKind, payload: dict) -> dict:
    """A stored payload with its personal fields opened (in memory only, to apply it)."""
    out = {k: v for k, v in payload.items() if k != REVIEWER_EDITS}
    for key, field in PERSONAL.get(kind, {}).items():
        if isinstance(out.get(key), dict):
            out[key] = sealer.open_field(field, out[key])
    return out


def _masked(kind: SubmissionKind, payload: dict) -> dict:
    """A stored payload as a screen may show it: each personal field its mask."""
    out = {k: v for k, v in payload.items() if k != REVIEWER_EDITS}
    for key in PERSONAL.get(kind, {}):
        if isinstance(out.get(key), dict):
            out[key] = out[key].get("masked")
    return out


# --- the queue ------------------------------------------------------------------------------------
def submit(cur, sealer: Sealer, submission_id, kind, grid_code: str, community_code: str, terminal_id: str,
           member_id: str, device_id: str | None, submitted_at: datetime, target_kind, target_id,
           fields: dict, photo_refs) -> bool:
    """Store a member's registration for review: its fields checked for shape (Refused("bad_payload")),
    its ID number and phones checked and sealed (Refused("bad_id_number" | "bad_phone")), its possible
    duplicates flagged. False when this submission id is already stored (a redelivery): kept once."""
    kind = store.as_enum(SubmissionKind, kind, "kind")
    target = None if target_kind is None else store.as_enum(RecordKind, target_kind, "target_kind").value
    submission_id = _uuid(submission_id)
    _checked_keys(kind, fields)
    _checked_values(kind, fields)
    if not community_code or not contains(community_code, grid_code):
        raise Refused("bad_value", f"grid {grid_code} is not in community {community_code}")
    cur.execute("select 1 from grids where code = %s", (grid_code,))
    if cur.fetchone() is None:
        raise Refused("not_found", f"no grid {grid_code}")
    payload = _sealed(sealer, kind, fields, fields)
    cur.execute("select 1 from ledger_submissions where submission_id = %s", (submission_id,))
    if cur.fetchone():
        return False
    found = duplicates_of(cur, sealer, {"submission_id": submission_id, "kind": kind, "fields": payload})
    cur.execute(
        "insert into ledger_submissions (submission_id, kind, grid_code, community_code, terminal_id, member_id,"
        " device_id, submitted_at, target_kind, target_id, payload, photo_refs, duplicates)"
        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) on conflict (submission_id) do nothing"
        " returning 1",
        (submission_id, kind.value, grid_code, community_code, terminal_id, member_id, device_id, submitted_at,
         target, None if target_id is None else str(target_id), Json(payload), list(photo_refs or ()), Json(found)))
    return cur.fetchone() is not None


def _index_of(sealer: Sealer, value) -> str | None:
    """The keyed index (hex) of an ID number given sealed (`sealed_field`) or in clear."""
    if isinstance(value, dict):
        return value.get("index")
    if isinstance(value, str):
        return sealer.index(ID_NUMBER, privacy.normalize_id_number(value)).hex()
    return None


def duplicates_of(cur, sealer: Sealer, submission: dict) -> list[dict]:
    """Records a new resident's registration may repeat — flagged for the reviewer, never refused: a
    resident with the same ID number (by its keyed index), a resident of the same name in the same
    house (not moved out), another pending submission with the same ID number. `submission` holds
    kind, fields (personal ones sealed or in clear) and, once submitted, its submission_id."""
    if SubmissionKind(submission["kind"]) is not SubmissionKind.NEW_RESIDENT:
        return []
    fields, found = submission["fields"], []
    index = _index_of(sealer, fields.get("id_number"))
    if index:
        cur.execute("select resident_id from residents where id_number_index = decode(%s, 'hex') order by 1",
                    (index,))
        found += [{"why": "same_id_number", "record_kind": RecordKind.RESIDENT.value, "record_id": str(r)}
                  for (r,) in cur.fetchall()]
        itself = submission.get("submission_id")        # none: a form not submitted yet
        cur.execute("select submission_id from ledger_submissions where state = %s and kind = %s"
                    " and payload -> 'id_number' ->> 'index' = %s and submission_id is distinct from %s"
                    " order by submitted_at", (SubmissionState.PENDING.value, SubmissionKind.NEW_RESIDENT.value,
                                              index, None if itself is None else _uuid(itself)))
        found += [{"why": "pending_same_id_number", "submission_id": str(s)} for (s,) in cur.fetchall()]
    if fields.get("house_id") is not None and isinstance(fields.get("name"), str):
        cur.execute("select r.resident_id from residents r join households h using (household_id)"
                    " where h.house_id = %s and r.name = %s and r.moved_out is null order by 1",
                    (_int(fields["house_id"], "house_id"), fields["name"].strip()))
        found += [{"why": "same_name_in_house", "record_kind": RecordKind.RESIDENT.value, "record_id": str(r)}
                  for (r,) in cur.fetchall()]
    return found


_SHOWN = ("select submission_id::text, kind, grid_code, community_code, member_id, terminal_id, submitted_at,"
          " received_at, target_kind, target_id, payload, photo_refs, duplicates, state, reviewed_at, reviewed_by,"
          " reason from ledger_submissions")


def _shown(row: dict) -> dict:
    """A submission as a screen may show it: its payload's fields masked (the reviewer's edits too)."""
    kind = SubmissionKind(row["kind"])
    edits = row["payload"].get(REVIEWER_EDITS)
    return {**{k: v for k, v in row.items() if k != "payload"}, "fields": _masked(kind, row["payload"]),
            "reviewer_edits": _masked(kind, edits) if edits else None}


def pending(cur, community_code: str, limit: int = 100) -> list[dict]:
    """A community's review queue, oldest first (as submitted on the phone), personal fields masked."""
    limit = max(1, min(int(limit), MAX_QUEUE))
    with cur.connection.cursor(cursor_factory=RealDictCursor) as dict_cur:
        dict_cur.execute(f"{_SHOWN} where community_code = %s and state = %s order by submitted_at, submission_id"
                         " limit %s", (community_code, SubmissionState.PENDING.value, limit))
        return [_shown(row) for row in dict_cur.fetchall()]


def one(cur, submission_id, scope_code: str | None = None) -> dict | None:
    """One submission in any state, masked, or None (also when it lies outside `scope_code`)."""
    with cur.connection.cursor(cursor_factory=RealDictCursor) as dict_cur:
        dict_cur.execute(f"{_SHOWN} where submission_id = %s", (_uuid(submission_id),))
        row = dict_cur.fetchone()
    if row is None or (scope_code is not None and not contains(scope_code, row["grid_code"])):
        return None
    return _shown(row)


def _locked(cur, submission_id, scope_code: str | None) -> dict:
    """The submission's row locked for its decision; Refused when unknown or outside the reviewer's
    scope (an org code: the screens pass their user's, so no write leaves it)."""
    with cur.connection.cursor(cursor_factory=RealDictCursor) as dict_cur:
        dict_cur.execute("select submission_id::text, kind, grid_code, member_id, state, reviewed_by, reason,"
                         " payload from ledger_submissions where submission_id = %s for update",
                         (_uuid(submission_id),))
        row = dict_cur.fetchone()
    if row is None:
        raise Refused("not_found", f"no submission {submission_id}")
    if scope_code is not None and not contains(scope_code, row["grid_code"]):
        raise Refused("out_of_scope", f"submission {submission_id} lies outside {scope_code or 'the city'}")
    return dict(row)


def _decided(row: dict, command: review.Command, reviewer: str) -> review.Decided:
    before = review.Review(row["submission_id"], row["member_id"], SubmissionState(row["state"]),
                           row["reviewed_by"], row["reason"])
    outcome = review.decide(before, command, reviewer)
    if not outcome:
        raise Refused(outcome.code, outcome.reason)
    return outcome


def approve(cur, sealer: Sealer, submission_id, reviewer: str, edited_fields: dict | None = None,
            scope_code: str | None = None) -> tuple[RecordKind, str]:
    """Approve a pending submission (with the reviewer's `edited_fields` laid over the member's): the
    ledger changes through ledger.store (channel handheld, by the member, approved by the reviewer)
    and the submission is marked approved, all in the caller's transaction. Returns the record it
    made or changed; Refused (already_decided, out_of_scope, not_found, bad_*, …) changes nothing."""
    row = _locked(cur, submission_id, scope_code)
    kind = SubmissionKind(row["kind"])
    _decided(row, review.Approve(edited_fields), reviewer)
    if edited_fields is not None:
        _checked_keys(kind, edited_fields, edit=True)
        _checked_values(kind, edited_fields)
    fields = {**_opened(sealer, kind, row["payload"]), **(edited_fields or {})}
    actor = Actor(row["member_id"], Channel.HANDHELD, row["submission_id"], reviewer)
    cur.execute("savepoint ledger_approve")       # a refusal half-way leaves the caller's transaction as it was
    try:
        record_kind, record_id = _APPLY[kind](cur, sealer, fields, row, actor)
        edits = _sealed(sealer, kind, edited_fields, fields) if edited_fields else None
    except Refused:
        cur.execute("rollback to savepoint ledger_approve")
        raise
    cur.execute("release savepoint ledger_approve")
    cur.execute("update ledger_submissions set state = %s, reviewed_at = now(), reviewed_by = %s, target_kind = %s,"
                " target_id = %s, payload = payload || %s where submission_id = %s",
                (SubmissionState.APPROVED.value, reviewer, record_kind.value, str(record_id),
                 Json({REVIEWER_EDITS: edits} if edits else {}), row["submission_id"]))
    return record_kind, str(record_id)


def send_back(cur, submission_id, reviewer: str, reason: str, scope_code: str | None = None) -> None:
    """Send a pending submission back to its member with a reason (nothing in the ledger changes)."""
    row = _locked(cur, submission_id, scope_code)
    decided = _decided(row, review.SendBack(reason), reviewer)
    cur.execute("update ledger_submissions set state = %s, reviewed_at = now(), reviewed_by = %s, reason = %s"
                " where submission_id = %s",
                (SubmissionState.RETURNED.value, reviewer, decided.review.reason, row["submission_id"]))


# --- what an approval does to the ledger, per kind --------------------------------------------------
def _new_resident(cur, sealer: Sealer, f: dict, row: dict, actor: Actor) -> tuple[RecordKind, int]:
    """A new resident in a household of the house (no household given: a new one, they its head)."""
    house_id = _int(f["house_id"], "house_id")
    tags = f.get("tags") or []
    if not isinstance(tags, list):
        raise Refused("bad_payload", "tags are a list")
    household_id, relation = f.get("household_id"), f["relation"]
    if household_id is None:
        household_id, relation = store.add_household(cur, house_id, actor), Relation.HEAD
    else:
        household_id = _int(household_id, "household_id")
        cur.execute("select house_id from households where household_id = %s", (household_id,))
        found = cur.fetchone()
        if found is None or found[0] != house_id:
            raise Refused("bad_value", f"household {household_id} is not in house {house_id}")
    resident = Resident(household_id, relation, f["name"], f["gender"], f["registration"], f["birth_date"],
                        f.get("id_number"), f.get("phone"), f.get("moved_in"), tags=frozenset(tags))
    resident_id = store.add_resident(cur, sealer, resident, actor)
    if f.get("household_id") is None:
        store.set_head(cur, household_id, resident_id, actor)
    return RecordKind.RESIDENT, resident_id


def _moved_out(cur, sealer: Sealer, f: dict, row: dict, actor: Actor) -> tuple[RecordKind, int]:
    resident_id = _int(f["resident_id"], "resident_id")
    store.move_out(cur, resident_id, store.as_date(f["moved_out"], "moved_out"), actor)
    return RecordKind.RESIDENT, resident_id


def _household_changed(cur, sealer: Sealer, f: dict, row: dict, actor: Actor) -> tuple[RecordKind, int]:
    """Relations of the household's residents, then its head (each resident must be in it)."""
    household_id = _int(f["household_id"], "household_id")
    relations = f.get("relations") or {}
    if not isinstance(relations, dict):
        raise Refused("bad_payload", "relations map resident ids to relations")
    for key, relation in sorted(relations.items()):
        resident_id = _int(key, "resident id")
        cur.execute("select household_id from residents where resident_id = %s", (resident_id,))
        found = cur.fetchone()
        if found is None or found[0] != household_id:
            raise Refused("not_in_household", f"resident {resident_id} is not in household {household_id}")
        store.update_resident(cur, None, resident_id, {"relation": relation}, actor)
    if f.get("head_id") is not None:
        store.set_head(cur, household_id, _int(f["head_id"], "head_id"), actor)
    return RecordKind.HOUSEHOLD, household_id


def _house_use_changed(cur, sealer: Sealer, f: dict, row: dict, actor: Actor) -> tuple[RecordKind, int]:
    house_id = _int(f["house_id"], "house_id")
    store.set_house_use(cur, house_id, f["use"], actor, area_m2=f.get("area_m2"))
    return RecordKind.HOUSE, house_id


def _new_shop(cur, sealer: Sealer, f: dict, row: dict, actor: Actor) -> tuple[RecordKind, str]:
    """A new shop in the submission's grid and at its point; in its building's grid, and at the
    building's point when the phone gave none, when it names a building."""
    grid_code, lon, lat = row["grid_code"], f.get("lon"), f.get("lat")
    if f.get("building_id") is not None:
        cur.execute("select grid_code, lon, lat from buildings where building_id = %s", (f["building_id"],))
        found = cur.fetchone()
        if found is None:
            raise Refused("not_found", f"no building {f['building_id']}")
        grid_code = found[0]
        if lon is None or lat is None:
            lon, lat = found[1], found[2]
    if lon is None or lat is None:
        raise Refused("bad_payload", "a shop without a building gives its lon and lat")
    lon, lat = float(lon), float(lat)
    shop = Shop(grid_code, f["name"], f["kind"], lon, lat, building_id=f.get("building_id"),
                licence=f.get("licence"), contact_name=f.get("contact_name"), contact_phone=f.get("contact_phone"),
                fire_key_unit=bool(f.get("fire_key_unit")))
    return RecordKind.UNIT, store.add_unit(cur, sealer, shop, actor)


def _thing_damaged(cur, sealer: Sealer, f: dict, row: dict, actor: Actor) -> tuple[RecordKind, str]:
    state = store.as_enum(ThingState, f["state"], "state")
    if state not in DAMAGE_STATES:
        raise Refused("bad_value", f"a damage report's state is {' or '.join(sorted(DAMAGE_STATES))}")
    store.set_thing_state(cur, str(f["thing_id"]), state, actor)
    return RecordKind.THING, str(f["thing_id"])


_APPLY = {
    SubmissionKind.NEW_RESIDENT: _new_resident, SubmissionKind.MOVED_OUT: _moved_out,
    SubmissionKind.HOUSEHOLD_CHANGED: _household_changed, SubmissionKind.HOUSE_USE_CHANGED: _house_use_changed,
    SubmissionKind.NEW_SHOP: _new_shop, SubmissionKind.THING_DAMAGED: _thing_damaged,
}

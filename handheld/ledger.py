"""The members' registrations from the handheld (采集登记, docs/HANDHELD_API.md "Registrations"): the
endpoint that takes them into the community's review queue, and the reads the phone's forms choose
from (the grid's buildings, a building's houses and residents, the grid's parts, my registrations).

Not through the ingest chain: a message the chain refuses is kept raw in `dead_letters`, which
would keep an ID number in clear. A registration is validated (handheld.ledger_forms), sealed and
stored in one transaction here (ledger.submissions.submit), answered after the commit, idempotent
by the phone's own id, and refused with a specific reason the app shows in its refused list.

Every call is for signed-in phones only (`Sessions.signed_in`) and scoped to the caller's grid on
the server: a house, resident, household, part or building of another grid is `404 not_found`,
as for other scoped reads. The reads show names (the grid's own members may see them) but never an
ID number, and a phone only masked; never a restricted tag (core.ledger.RESTRICTED_TAGS).

A service without GCC_LEDGER_KEY cannot seal: it answers `503 ledger_unavailable` to a
registration and never stores clear data; its reads still answer (they show masked data only).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime
from urllib.parse import unquote

import orjson

from core.catalogue import Label
from core.city import CITY_TZ
from core.http import Refused, Reply, Request, Route
from core.ledger import (
    GENDER_LABELS,
    HOUSE_USE_LABELS,
    REGISTRATION_LABELS,
    RELATION_LABELS,
    RESTRICTED_TAGS,
    SUBMISSION_KIND_LABELS,
    SUBMISSION_STATE_LABELS,
    TAG_LABELS,
    THING_KIND_LABELS,
    THING_STATE_LABELS,
    RecordKind,
    Registration,
    SubmissionKind,
    ThingKind,
    values,
)
from core.orgcodes import Level, ancestor
from database.pool import WaitingPool, transaction
from handheld.caller import Caller
from handheld.ledger_forms import TARGETS, FormRefused, Submission, parse
from handheld.reads import answer, shown
from handheld.sessions import API, database_unavailable
from ledger.model import Refused as LedgerRefused
from ledger.privacy import Sealer
from ledger.submissions import DAMAGE_STATES, submit

log = logging.getLogger(__name__)

LEDGER_API = f"{API}/ledger"
SUBMISSIONS_PATH = f"{LEDGER_API}/submissions"
BUILDINGS_PATH = f"{LEDGER_API}/buildings"
POOL_SIZE = 4
MAX_LISTED = 500              # parts, buildings in one answer
MY_SUBMISSIONS = 100          # my most recent registrations
_CARE_TAGS = [tag for tag in TAG_LABELS if tag not in RESTRICTED_TAGS]

# the case category a damaged part is reported under (core.catalogue's incident categories)
PART_CATEGORY: dict[ThingKind, str] = {
    ThingKind.HYDRANT: "public_facility", ThingKind.MANHOLE_COVER: "manhole_cover",
    ThingKind.STREET_LAMP: "street_light", ThingKind.CAMERA: "public_facility",
    ThingKind.FIRE_EXTINGUISHER: "fire_hazard", ThingKind.AED: "public_facility",
}

# the grid a target belongs to, by its record kind (a household: its house's)
_TARGET_GRID = {
    RecordKind.HOUSE: "select grid_code from houses where house_id = %s",
    RecordKind.RESIDENT: "select grid_code from residents where resident_id = %s",
    RecordKind.HOUSEHOLD: "select h.grid_code from households o join houses h using (house_id) "
                          "where o.household_id = %s",
    RecordKind.THING: "select grid_code from things where thing_id = %s",
    RecordKind.BUILDING: "select grid_code from buildings where building_id = %s",
}
_NUMERIC_IDS = {RecordKind.HOUSE, RecordKind.RESIDENT, RecordKind.HOUSEHOLD}


def _json(status: int, doc: dict) -> Reply:
    return Reply(status, orjson.dumps(doc))


def _refused(status: int, reason: str, detail: str) -> Refused:
    return Refused(Reply(status, orjson.dumps({"error": reason, "detail": detail}), refused=reason))


def _words(labels: dict) -> list[dict]:
    return [{"value": value.value, "label_zh": label.zh, "label_en": label.en} for value, label in labels.items()]


def _label(labels: dict, value: str) -> str:
    """A stored value's label as the phone shows it (the value itself for one no vocabulary knows)."""
    found = next((label for key, label in labels.items() if key.value == value), None)
    return shown(found or Label(value, value))


def _age(born: date | None, today: date) -> int | None:
    if born is None:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def store(cur, sealer: Sealer, submission: Submission, caller: Caller) -> bool:
    """The registration into its community's review queue by the ledger's own writer
    (ledger.submissions.submit: personal fields sealed, duplicates flagged), in the caller's
    transaction; False when its id was stored already. Its refusal is `400` with its code and detail."""
    try:
        return submit(cur, sealer, str(submission.submission_id), submission.kind.value, caller.grid_code,
                      ancestor(caller.grid_code, Level.COMMUNITY), caller.terminal_id, caller.member_id,
                      caller.device_id, submission.submitted_at, submission.target_kind.value, submission.target_id,
                      submission.fields, submission.photo_refs)
    except LedgerRefused as refused:
        raise _refused(404 if refused.code == "not_found" else 400, refused.code, refused.detail) from None


class HandheldLedger:
    """The registration endpoint and the forms' reads, on a pool of their own. `sealer` is None when
    the service has no ledger key (registrations then answer 503 ledger_unavailable)."""

    def __init__(self, dsn: str, sealer: Sealer | None) -> None:
        self.pool = WaitingPool(0, POOL_SIZE, dsn, connect_timeout=5)
        self.sealer = sealer

    @classmethod
    def from_settings(cls, settings) -> HandheldLedger:
        key = settings.ledger_key.get_secret_value()
        if not key:
            log.warning("no GCC_LEDGER_KEY: the handheld's registrations answer 503 ledger_unavailable")
        return cls(settings.pg_dsn, Sealer(key) if key else None)

    def close(self) -> None:
        self.pool.closeall()

    def _cursor(self):
        """A cursor in a transaction (committed on leaving), or `503 database_unavailable`."""
        return transaction(self.pool, database_unavailable)

    # --- scope -----------------------------------------------------------------------------------------
    @staticmethod
    def _in_grid(cur, caller: Caller, kind: RecordKind, record_id: str) -> bool:
        """Whether the record exists and is of the caller's grid (else the caller is told not_found)."""
        if kind in _NUMERIC_IDS and not (record_id.isascii() and record_id.isdigit() and len(record_id) <= 18):
            return False
        cur.execute(_TARGET_GRID[kind], (int(record_id) if kind in _NUMERIC_IDS else record_id,))
        row = cur.fetchone()
        return row is not None and row[0].strip() == caller.grid_code

    def _check_scope(self, cur, caller: Caller, submission: Submission) -> Submission:
        """The target, and the records the fields name, are the caller's grid's (a new resident's
        household is one of the target house's, a household change's residents live in it); a shop
        without a position is placed at its building. The submission as it is stored."""
        if not self._in_grid(cur, caller, submission.target_kind, submission.target_id):
            raise _refused(404, "not_found", f"no {submission.target_kind.value} {submission.target_id} in your grid")
        fields = submission.fields
        if submission.kind is SubmissionKind.NEW_RESIDENT and fields.get("household_id") is not None:
            cur.execute("select 1 from households where household_id = %s and house_id = %s",
                        (fields["household_id"], fields["house_id"]))
            if cur.fetchone() is None:
                raise _refused(404, "not_found", f"no household {fields['household_id']} in house {fields['house_id']}")
        if submission.named:
            cur.execute("select resident_id from residents where household_id = %s and resident_id = any(%s)",
                        (fields["household_id"], sorted(submission.named)))
            missing = submission.named - {row[0] for row in cur.fetchall()}
            if missing:
                raise _refused(404, "not_found", f"no resident {min(missing)} in household {fields['household_id']}")
        if submission.kind is SubmissionKind.NEW_SHOP and fields.get("lon") is None:
            cur.execute("select lon, lat from buildings where building_id = %s", (fields["building_id"],))
            lon, lat = cur.fetchone()
            return replace(submission, fields={**fields, "lon": lon, "lat": lat})
        return submission

    # --- the registration ------------------------------------------------------------------------------
    def submit(self, caller: Caller, request: Request) -> Reply:
        """`201 {"stored": true}` once committed, `200` for an id already stored by this member;
        `400` with the reason and what was wrong, `404` for a target outside the grid, `409 id_taken`
        for an id another member's registration holds, `503 ledger_unavailable` without a key."""
        if self.sealer is None:
            raise _refused(503, "ledger_unavailable", "this service has no ledger key: nothing is stored")
        try:
            submission = parse(request.body())
        except FormRefused as wrong:
            raise _refused(400, wrong.reason, wrong.detail) from None
        with self._cursor() as cur:
            submission = self._check_scope(cur, caller, submission)
            if store(cur, self.sealer, submission, caller):
                return _json(201, {"stored": True})
            cur.execute("select member_id from ledger_submissions where submission_id = %s",
                        (str(submission.submission_id),))
            owner = cur.fetchone()
        if owner is None or owner[0] != caller.member_id:
            raise _refused(409, "id_taken", "another registration has this id: make a new one")
        return _json(200, {"stored": True})

    # --- the forms' reads ---------------------------------------------------------------------------------
    def rows(self, sql: str, args: tuple) -> list[tuple]:
        with self._cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    def words(self, caller: Caller, request: Request) -> Reply:
        """The ledger's words the forms offer (core.ledger), each value with its labels, and the record
        kind each registration's target is: the app spells none of them."""
        registrations = [{**word, "id_checked": word["value"] != Registration.FOREIGN.value}   # GB 11643 or not
                         for word in _words(REGISTRATION_LABELS)]
        return answer({"genders": _words(GENDER_LABELS), "registrations": registrations,
                       "relations": _words(RELATION_LABELS),
                       "care_tags": _words({tag: TAG_LABELS[tag] for tag in _CARE_TAGS}),
                       "house_uses": _words(HOUSE_USE_LABELS),
                       "damaged_states": _words({s: label for s, label in THING_STATE_LABELS.items()
                                                 if s in DAMAGE_STATES}),
                       "kinds": _words(SUBMISSION_KIND_LABELS),
                       "targets": {kind.value: record.value for kind, record in TARGETS.items()}})

    def buildings(self, caller: Caller, request: Request) -> Reply:
        """The caller's grid's buildings: id, name, floors, entrances and the houses the ledger holds."""
        rows = self.rows("select b.building_id, b.name, b.floors, b.entrances, "
                         "(select count(*) from houses h where h.building_id = b.building_id) "
                         "from buildings b where b.grid_code = %s order by b.name, b.building_id limit %s",
                         (caller.grid_code, MAX_LISTED))
        return answer({"buildings": [{"building_id": r[0], "name": r[1], "floors": r[2], "entrances": r[3],
                                      "houses": r[4]} for r in rows]})

    def building(self, caller: Caller, request: Request) -> Reply:
        """One building of the caller's grid: its houses by entrance and floor, each with its use, its
        households and their residents (id, name, relation, age, masked phone, care tags)."""
        building_id = unquote(request.path.split("?", 1)[0][len(BUILDINGS_PATH) + 1:])
        if not building_id or len(building_id) > 64:
            raise _refused(400, "bad_building_id", "a building id is 1 to 64 characters")
        found = self.rows("select building_id, name, floors, entrances from buildings "
                          "where building_id = %s and grid_code = %s", (building_id, caller.grid_code))
        if not found:
            raise _refused(404, "not_found", f"no building {building_id} in your grid")
        with self._cursor() as cur:
            houses, people, tags = self._building_rows(cur, building_id)
        return answer({"building": dict(zip(("building_id", "name", "floors", "entrances"), found[0], strict=True)),
                       "houses": _houses(houses, people, tags)})

    @staticmethod
    def _building_rows(cur, building_id: str) -> tuple[list, list, list]:
        """A building's houses, its households' residents living there now, and their care tags."""
        cur.execute("select house_id, entrance, floor, number, use from houses where building_id = %s "
                    "order by entrance, floor, number", (building_id,))
        houses = cur.fetchall()
        cur.execute("select o.household_id, o.house_id, o.head_id, r.resident_id, r.name, r.relation, r.gender, "
                    "r.birth_date, r.phone_masked, r.registration from households o join houses h using (house_id) "
                    "left join residents r on r.household_id = o.household_id "
                    "and (r.moved_out is null or r.moved_out > current_date) "
                    "where h.building_id = %s order by o.household_id, r.resident_id", (building_id,))
        people = cur.fetchall()
        cur.execute("select t.resident_id, t.tag from resident_tags t join residents r using (resident_id) "
                    "join households o using (household_id) join houses h using (house_id) "
                    "where h.building_id = %s and t.tag <> all(%s) order by t.tag",
                    (building_id, sorted(RESTRICTED_TAGS)))
        return houses, people, cur.fetchall()

    def things(self, caller: Caller, request: Request) -> Reply:
        """The caller's grid's parts: id, kind, state, position, building, and the case category a
        damage is reported under."""
        rows = self.rows("select thing_id, kind, state, st_y(position), st_x(position), building_id from things "
                         "where grid_code = %s order by kind, thing_id limit %s", (caller.grid_code, MAX_LISTED))
        return answer({"things": [
            {"thing_id": r[0], "kind": r[1], "kind_label": _label(THING_KIND_LABELS, r[1]), "state": r[2],
             "state_label": _label(THING_STATE_LABELS, r[2]), "lat": r[3], "lon": r[4], "building_id": r[5],
             "category": PART_CATEGORY.get(ThingKind(r[1])) if r[1] in values(ThingKind) else None}
            for r in rows]})

    def mine(self, caller: Caller, request: Request) -> Reply:
        """The caller's member's most recent registrations (from any of its phones), with their review
        state, and the reason when one was sent back."""
        rows = self.rows("select submission_id, kind, state, reason, submitted_at, received_at, reviewed_at, "
                         "target_kind, target_id, payload ->> 'name' from ledger_submissions where member_id = %s "
                         "order by submitted_at desc limit %s", (caller.member_id, MY_SUBMISSIONS))
        return answer({"submissions": [
            {"id": str(r[0]), "kind": r[1], "kind_label": _label(SUBMISSION_KIND_LABELS, r[1]), "state": r[2],
             "state_label": _label(SUBMISSION_STATE_LABELS, r[2]), "reason": r[3], "submitted_at": r[4],
             "received_at": r[5], "reviewed_at": r[6], "target_kind": r[7], "target_id": r[8], "name": r[9]}
            for r in rows]})

    def routes(self, signed_in: Callable[[Callable[[Caller, Request], Reply]], Callable[[Request], Reply]]
               ) -> list[Route]:
        """The registration (a JSON body ≤ 64 KB) and the forms' reads, each behind the session check."""
        reads = {"words": self.words, "buildings": self.buildings, "things": self.things, "submissions": self.mine}
        return [Route("POST", SUBMISSIONS_PATH, signed_in(self.submit)),
                *(Route("GET", f"{LEDGER_API}/{name}", signed_in(read), max_body=0) for name, read in reads.items()),
                Route("GET", f"{BUILDINGS_PATH}/", signed_in(self.building), max_body=0)]


def _houses(houses: list, people: list, tags: list) -> list[dict]:
    """The building's houses as the phone draws them (entrance, floor, number), households and residents in each."""
    today = datetime.now(CITY_TZ).date()
    tags_of: dict[int, list[dict]] = {}
    for resident_id, tag in tags:
        tags_of.setdefault(resident_id, []).append({"tag": tag, "label": _label(TAG_LABELS, tag)})
    households: dict[int, dict] = {}
    by_house: dict[int, list[dict]] = {}
    for household_id, house_id, head_id, resident_id, name, relation, gender, born, phone, registration in people:
        if household_id not in households:
            households[household_id] = {"household_id": household_id, "head_id": head_id, "residents": []}
            by_house.setdefault(house_id, []).append(households[household_id])
        if resident_id is not None:
            households[household_id]["residents"].append({
                "resident_id": resident_id, "name": name, "relation": relation,
                "relation_label": _label(RELATION_LABELS, relation), "gender": gender,
                "age": _age(born, today), "phone_masked": phone,
                "registration_label": _label(REGISTRATION_LABELS, registration), "tags": tags_of.get(resident_id, [])})
    return [{"house_id": house_id, "entrance": entrance, "floor": floor, "number": number, "use": use,
             "use_label": _label(HOUSE_USE_LABELS, use), "households": by_house.get(house_id, [])}
            for house_id, entrance, floor, number, use in houses]

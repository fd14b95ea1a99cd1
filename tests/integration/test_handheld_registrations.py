"""The members' registrations from the handheld (采集登记) through the real device-facing service
(`python -m ingest.http`, its ledger key from the stack): each kind is stored once in the community's
review queue with no ID number or phone in clear (checked with SQL), a repeat is 200 and stored
once, bad fields are 400 with the reason, another grid's house, resident or part is 404, a revoked
phone is refused, a service without a key answers 503 and stores nothing; the forms' reads show
the grid's buildings, houses and residents masked, never a restricted tag."""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone

import orjson
import psycopg2
import pytest

from core.ledger import (
    Gender,
    HouseUse,
    RecordKind,
    Registration,
    Relation,
    SubmissionKind,
    SubmissionState,
    Tag,
    ThingKind,
    ThingState,
)
from ledger.privacy import Sealer
from registry.broker import BrokerAdmin
from registry.store import Actor, DeviceRegistry

from .ingest_helpers import HttpService, owner_rows
from .test_handheld_api import call

API = "/handheld/api/v1"
SUBMISSIONS = f"{API}/ledger/submissions"
ADMIN = Actor("t-hh-ledger")
PHONE_NUMBER = "13912345678"
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_number(born: date, serial: str = "123", region: str = "350102") -> str:
    """A GB 11643 ID number for a birth date (its check character computed)."""
    body = f"{region}{born:%Y%m%d}{serial}"
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, _WEIGHTS, strict=True)) % 11]


@dataclass
class Planted:
    """Ledger rows of this module's own: a house, household, resident (with a restricted and a care
    tag) and a part in the member's grid, the same in another grid."""
    building_id: str
    house_id: int
    household_id: int
    resident_id: int
    thing_id: str
    other_house_id: int
    other_resident_id: int
    other_thing_id: str
    other_building_id: str


@contextmanager
def owner_cursor(stack):
    conn = psycopg2.connect(stack.settings().pg_dsn)
    try:
        with conn, conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def plant_home(cur, sealer: Sealer, building, tag: str) -> tuple[int, int, int, str]:
    """A house in `building` with a household of one resident (sealed phone) and a part: their ids."""
    cur.execute("insert into houses (building_id, grid_code, entrance, floor, number, use) "
                "values (%s, %s, 1, 5, %s, %s) returning house_id",
                (building.building_id, building.grid_code, f"t-{tag}-501", HouseUse.RENTED.value))
    house_id = cur.fetchone()[0]
    cur.execute("insert into households (house_id) values (%s) returning household_id", (house_id,))
    household_id = cur.fetchone()[0]
    cur.execute("insert into residents (household_id, grid_code, relation, name, gender, birth_date, phone_sealed, "
                "phone_index, phone_masked, registration) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "returning resident_id",
                (household_id, building.grid_code, Relation.HEAD.value, f"测试户主{tag}", Gender.FEMALE.value,
                 date(1940, 2, 3), sealer.seal("phone", PHONE_NUMBER), sealer.index("phone", PHONE_NUMBER),
                 "139****5678", Registration.LOCAL.value))
    resident_id = cur.fetchone()[0]
    cur.execute("update households set head_id = %s where household_id = %s", (resident_id, household_id))
    cur.executemany("insert into resident_tags (resident_id, tag) values (%s, %s)",
                    [(resident_id, Tag.ELDERLY_ALONE.value), (resident_id, Tag.COMMUNITY_CORRECTION.value)])
    thing_id = f"t-hh-ledger-{tag}-{uuid.uuid4().hex[:6]}"
    cur.execute("insert into things (thing_id, kind, grid_code, position, owner, state) "
                "values (%s, %s, %s, st_setsrid(st_makepoint(%s, %s), 4326), %s, %s)",
                (thing_id, ThingKind.MANHOLE_COVER.value, building.grid_code, building.lon, building.lat,
                 "市政", ThingState.GOOD.value))
    return house_id, household_id, resident_id, thing_id


def remove_planted(cur, planted: Planted, member_ids: list[str]) -> None:
    cur.execute("delete from ledger_submissions where member_id = any(%s) and target_id = any(%s)",
                (member_ids, [str(planted.house_id), str(planted.resident_id), planted.thing_id, planted.building_id,
                              str(planted.household_id),
                              str(planted.other_house_id), str(planted.other_resident_id), planted.other_thing_id]))
    for house_id, thing_id in ((planted.house_id, planted.thing_id), (planted.other_house_id, planted.other_thing_id)):
        cur.execute("delete from things where thing_id = %s", (thing_id,))
        cur.execute("update households set head_id = null where house_id = %s", (house_id,))
        cur.execute("delete from residents where household_id in (select household_id from households "
                    "where house_id = %s)", (house_id,))
        cur.execute("delete from households where house_id = %s", (house_id,))
        cur.execute("delete from houses where house_id = %s", (house_id,))


@pytest.fixture(scope="module")
def sealer(stack):
    return Sealer(stack.app_settings("ingest").ledger_key.get_secret_value())


@pytest.fixture(scope="module")
def service(stack, city, tmp_path_factory):
    with HttpService(stack, tmp_path_factory.mktemp("hh-ledger") / "ingest-http.log") as running:
        yield running


@pytest.fixture(scope="module")
def registry(stack):
    settings = stack.app_settings("dashboard")
    return DeviceRegistry(settings.pg_dsn, BrokerAdmin.from_settings(settings))


@pytest.fixture(scope="module")
def member(city):
    """A member of a residential grid with buildings, and another grid with buildings."""
    with_buildings = {b.grid_code for b in city.buildings}
    return next(m for m in city.members[40:] if m.grid_code in with_buildings)


@pytest.fixture(scope="module")
def planted(stack, city, sealer, member):
    mine = next(b for b in city.buildings if b.grid_code == member.grid_code)
    other = next(b for b in city.buildings if b.grid_code != member.grid_code)
    with owner_cursor(stack) as cur:
        house_id, household_id, resident_id, thing_id = plant_home(cur, sealer, mine, "mine")
        other_house, _, other_resident, other_thing = plant_home(cur, sealer, other, "other")
    rows = Planted(mine.building_id, house_id, household_id, resident_id, thing_id, other_house, other_resident,
                   other_thing, other.building_id)
    yield rows
    with owner_cursor(stack) as cur:
        remove_planted(cur, rows, [member.member_id])


def sign_in(port: int, registry: DeviceRegistry, member) -> tuple[str, str]:
    """A phone of `member` enrolled and signed in: (device id, token)."""
    enrolment = registry.enrol_handheld(ADMIN, member.member_id, "ledger test phone")
    status, enrolled, _ = call(port, "POST", f"{API}/enrol", orjson.dumps({"code": enrolment.code, "pin": "975310"}))
    assert status == 201, enrolled
    status, session, _ = call(port, "POST", f"{API}/session", orjson.dumps(
        {"device_id": enrolled["device_id"], "device_secret": enrolled["device_secret"], "pin": "975310"}))
    assert status == 200, session
    return enrolled["device_id"], session["token"]


@pytest.fixture(scope="module")
def phone(service, registry, member, planted):
    device_id, token = sign_in(service.port, registry, member)
    yield device_id, token
    registry.retire_device(ADMIN, device_id)


def registration(kind: SubmissionKind, target_kind: RecordKind, target_id, fields: dict, **more) -> dict:
    return {"id": str(uuid.uuid4()), "ts": datetime.now(timezone.utc).isoformat(), "kind": kind.value,
            "target_kind": target_kind.value, "target_id": str(target_id), "fields": fields, "photo_refs": [],
            **more}


def new_resident(planted: Planted, **fields) -> dict:
    born = date(1988, 4, 12)
    return registration(SubmissionKind.NEW_RESIDENT, RecordKind.HOUSE, planted.house_id, {
        "household_id": planted.household_id, "name": "李小梅", "gender": Gender.FEMALE.value,
        "birth_date": born.isoformat(), "id_number": id_number(born), "phone": "+86 138 0013 8000",
        "registration": Registration.FLOATING.value, "relation": Relation.TENANT.value,
        "moved_in": "2026-11-01", "tags": [Tag.LOW_INCOME.value], **fields})


def every_kind(planted: Planted) -> list[dict]:
    return [
        new_resident(planted),
        registration(SubmissionKind.MOVED_OUT, RecordKind.RESIDENT, planted.resident_id, {"moved_out": "2026-12-01"}),
        registration(SubmissionKind.HOUSEHOLD_CHANGED, RecordKind.HOUSEHOLD, planted.household_id,
                     {"relations": {str(planted.resident_id): Relation.HEAD.value}}),
        registration(SubmissionKind.HOUSE_USE_CHANGED, RecordKind.HOUSE, planted.house_id,
                     {"use": HouseUse.VACANT.value, "area_m2": 86.5}),
        registration(SubmissionKind.NEW_SHOP, RecordKind.BUILDING, planted.building_id,
                     {"name": "好邻居便利店", "kind": "便利店", "licence": "91350102MA2Y0X1234",
                      "contact_name": "王老板", "contact_phone": "13700001111", "fire_key_unit": False}),
        registration(SubmissionKind.THING_DAMAGED, RecordKind.THING, planted.thing_id,
                     {"state": ThingState.DAMAGED.value, "note": "井盖破裂"},
                     photo_refs=["sha256:" + "ab" * 32]),
    ]


def test_each_kind_is_stored_once_sealed_and_a_repeat_is_200(stack, city, service, phone, member, planted):
    device_id, token = phone
    for body in every_kind(planted):
        raw = orjson.dumps(body)
        assert call(service.port, "POST", SUBMISSIONS, raw, token)[:2] == (201, {"stored": True}), body["kind"]
        assert call(service.port, "POST", SUBMISSIONS, raw, token)[:2] == (200, {"stored": True})
        rows = owner_rows(stack, "select kind, grid_code, member_id, device_id, terminal_id, state, target_id, "
                          "payload::text from ledger_submissions where submission_id = %s", body["id"])
        assert len(rows) == 1
        kind, grid_code, member_id, device, terminal_id, state, target_id, payload = rows[0]
        assert (kind, grid_code, member_id, device, terminal_id, state, target_id) == (
            body["kind"], member.grid_code, member.member_id, device_id, member.terminal_id,
            SubmissionState.PENDING.value, body["target_id"])
        for personal in ("id_number", "phone", "contact_phone"):
            if personal in body["fields"]:
                clear = "".join(ch for ch in body["fields"][personal] if ch.isdigit() or ch == "X")
                assert clear[-11:] not in payload, f"{personal} in clear"
                assert "sealed" in orjson.loads(payload)[personal]
        target_key = {RecordKind.HOUSE.value: "house_id", RecordKind.RESIDENT.value: "resident_id",
                      RecordKind.HOUSEHOLD.value: "household_id", RecordKind.THING.value: "thing_id",
                      RecordKind.BUILDING.value: "building_id"}[body["target_kind"]]
        assert str(orjson.loads(payload)[target_key]) == body["target_id"]       # the payload says it all
        if body["kind"] == SubmissionKind.NEW_SHOP.value:                         # placed at its building
            assert orjson.loads(payload)["lon"] == next(b for b in city.buildings
                                                       if b.building_id == planted.building_id).lon
    resident = every_kind(planted)[0]["fields"]
    found = owner_rows(stack, "select count(*) from ledger_submissions where member_id = %s and "
                       "position(%s in payload::text) > 0", member.member_id, resident["id_number"])
    assert found == [(0,)]


def test_bad_fields_are_refused_with_the_reason(service, phone, planted):
    _, token = phone
    cases = [
        (new_resident(planted, name="张" * 31), "bad_fields", "fields.name"),
        (new_resident(planted, id_number=id_number(date(1990, 1, 1))), "bad_fields", "birth date"),
        (new_resident(planted, id_number="350102198804121230"), "bad_fields", "check digit"),
        (new_resident(planted, phone="12ab"), "bad_fields", "fields.phone"),
        (new_resident(planted, tags=[Tag.COMMUNITY_CORRECTION.value]), "bad_fields", "restricted"),
        (new_resident(planted, secret="x"), "bad_fields", "fields.secret"),
        (new_resident(planted, household_id="1"), "bad_fields", "fields.household_id"),
        (new_resident(planted, birth_date=19880412), "bad_fields", "fields.birth_date"),
        ({**new_resident(planted), "target_kind": RecordKind.THING.value}, "bad_target", "names a house"),
        (registration(SubmissionKind.THING_DAMAGED, RecordKind.THING, planted.thing_id,
                      {"state": ThingState.UNDER_REPAIR.value}), "bad_fields", "fields.state"),
        ({**new_resident(planted), "ts": "2026-12-07T10:00:00"}, "bad_submission", "ts"),
        ({**new_resident(planted), "kind": "new_dog"}, "bad_submission", "kind"),
    ]
    for body, reason, said in cases:
        status, answer, _ = call(service.port, "POST", SUBMISSIONS, orjson.dumps(body), token)
        assert (status, answer["error"]) == (400, reason), answer
        assert said in answer["detail"], answer
    status, answer, _ = call(service.port, "POST", SUBMISSIONS, b"{not json", token)
    assert (status, answer["error"]) == (400, "bad_json")


def test_another_grids_records_are_not_found(stack, service, phone, member, planted):
    _, token = phone
    others = [
        new_resident(planted, household_id=None) | {"target_id": str(planted.other_house_id)},
        registration(SubmissionKind.MOVED_OUT, RecordKind.RESIDENT, planted.other_resident_id,
                     {"moved_out": "2026-12-01"}),
        registration(SubmissionKind.THING_DAMAGED, RecordKind.THING, planted.other_thing_id,
                     {"state": ThingState.MISSING.value}),
        registration(SubmissionKind.HOUSEHOLD_CHANGED, RecordKind.HOUSEHOLD, planted.household_id,
                     {"head_id": planted.other_resident_id}),
        registration(SubmissionKind.HOUSE_USE_CHANGED, RecordKind.HOUSE, "999999999999",
                     {"use": HouseUse.VACANT.value}),
    ]
    for body in others:
        status, answer, _ = call(service.port, "POST", SUBMISSIONS, orjson.dumps(body), token)
        assert (status, answer["error"]) == (404, "not_found"), answer
    ids = [body["id"] for body in others]
    stored = owner_rows(stack, "select count(*) from ledger_submissions where submission_id::text = any(%s)", ids)
    assert stored == [(0,)]


def test_the_forms_reads_are_the_grids_and_masked(service, phone, member, planted):
    _, token = phone
    status, listed, _ = call(service.port, "GET", f"{API}/ledger/buildings", token=token)
    assert status == 200 and planted.building_id in {b["building_id"] for b in listed["buildings"]}
    status, panel, _ = call(service.port, "GET", f"{API}/ledger/buildings/{planted.building_id}", token=token)
    assert status == 200, panel
    house = next(h for h in panel["houses"] if h["house_id"] == planted.house_id)
    resident = house["households"][0]["residents"][0]
    assert resident["phone_masked"] == "139****5678" and resident["age"] >= 86
    assert [t["tag"] for t in resident["tags"]] == [Tag.ELDERLY_ALONE.value]      # never a restricted tag
    assert PHONE_NUMBER.encode() not in orjson.dumps(panel)
    other = call(service.port, "GET", f"{API}/ledger/buildings/{planted.other_building_id}", token=token)
    assert (other[0], other[1]["error"]) == (404, "not_found")
    status, things, _ = call(service.port, "GET", f"{API}/ledger/things", token=token)
    ids = {t["thing_id"]: t for t in things["things"]}
    assert planted.thing_id in ids and planted.other_thing_id not in ids
    assert ids[planted.thing_id]["category"] == "manhole_cover"


def test_my_submissions_show_their_review_state(stack, service, phone, planted):
    _, token = phone
    body = new_resident(planted)
    assert call(service.port, "POST", SUBMISSIONS, orjson.dumps(body), token)[0] == 201
    with owner_cursor(stack) as cur:
        cur.execute("update ledger_submissions set state = %s, reviewed_at = now(), reviewed_by = 't', reason = %s "
                    "where submission_id = %s", (SubmissionState.RETURNED.value, "身份证照片不清", body["id"]))
    status, mine, _ = call(service.port, "GET", SUBMISSIONS, token=token)
    assert status == 200
    item = next(s for s in mine["submissions"] if s["id"] == body["id"])
    assert (item["state"], item["reason"], item["name"]) == (SubmissionState.RETURNED.value, "身份证照片不清", "李小梅")
    assert item["state_label"].startswith("已退回")


def test_a_revoked_phone_is_refused(stack, service, registry, member, planted):
    device_id, token = sign_in(service.port, registry, member)
    registry.revoke(ADMIN, device_id)
    body = new_resident(planted)
    status, answer, _ = call(service.port, "POST", SUBMISSIONS, orjson.dumps(body), token)
    assert (status, answer["error"]) == (403, "revoked_device")
    assert owner_rows(stack, "select count(*) from ledger_submissions where submission_id = %s", body["id"]) == [(0,)]
    registry.retire_device(ADMIN, device_id)


def test_a_service_without_a_key_stores_nothing(stack, city, registry, member, planted, tmp_path):
    with HttpService(stack, tmp_path / "no-key.log", env={"GCC_LEDGER_KEY": ""}) as keyless:
        device_id, token = sign_in(keyless.port, registry, member)
        body = new_resident(planted)
        status, answer, _ = call(keyless.port, "POST", SUBMISSIONS, orjson.dumps(body), token)
        registry.retire_device(ADMIN, device_id)
    assert (status, answer["error"]) == (503, "ledger_unavailable")
    assert owner_rows(stack, "select count(*) from ledger_submissions where submission_id = %s", body["id"]) == [(0,)]


def test_an_id_another_member_used_is_refused_not_taken_as_a_repeat(stack, city, service, registry, phone, member,
                                                                    planted):
    _, token = phone
    body = new_resident(planted)
    assert call(service.port, "POST", SUBMISSIONS, orjson.dumps(body), token)[0] == 201
    neighbour = next(m for m in city.members if m.grid_code == member.grid_code and m.member_id != member.member_id)
    device_id, other_token = sign_in(service.port, registry, neighbour)
    status, answer, _ = call(service.port, "POST", SUBMISSIONS, orjson.dumps(body), other_token)
    registry.retire_device(ADMIN, device_id)
    assert (status, answer["error"]) == (409, "id_taken")
    assert owner_rows(stack, "select member_id from ledger_submissions where submission_id = %s", body["id"]) == \
        [(member.member_id,)]

"""ledger.store against the real database: every change of a record is one history row with its
version, who, channel and approver; ID numbers and phones are never in clear (in the residents' rows
nor in the history: checked with SQL over every column); a stale expected version is refused, also
when two reviewers race; bad values are refused with their reason; the moved-out deletion deletes
only those past its date, with their tags, and leaves no personal data in their history."""
from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import date

import psycopg2
import pytest

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
from ledger import privacy, store
from ledger.model import Actor, House, Refused, Resident, Shop, Thing
from ledger.privacy import ID_NUMBER, PHONE, Sealer

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
GRID_INDEX = 97


def id_number(born: date, serial: int) -> str:
    """A GB 11643 ID number for a birth date (its check character computed)."""
    body = f"350102{born:%Y%m%d}{serial % 1000:03d}"
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, _WEIGHTS, strict=True)) % 11]


def fresh_id(born: date) -> str:
    return id_number(born, uuid.uuid4().int)


def fresh_phone() -> str:
    return f"139{uuid.uuid4().int % 10**8:08d}"


@dataclass
class Plot:
    """A building of this test's own in a grid of the session city; every change it makes is by
    an actor whose name starts with `tag` (so the cleanup finds its history)."""
    tag: str
    grid_code: str
    community_code: str
    building_id: str
    lon: float
    lat: float

    def actor(self, who: str = "clerk", channel: Channel = Channel.SCREEN) -> Actor:
        return Actor(f"{self.tag}-{who}", channel)


def remove_plot(cur, plot: Plot) -> None:
    """Everything planted on the plot, and every history row its actors wrote."""
    cur.execute("delete from ledger_changes where starts_with(changed_by, %s) or submission_id in"
                " (select submission_id from ledger_submissions where starts_with(member_id, %s))",
                (plot.tag, plot.tag))
    cur.execute("delete from ledger_submissions where starts_with(member_id, %s)", (plot.tag,))
    cur.execute("update households set head_id = null where house_id in"
                " (select house_id from houses where building_id = %s)", (plot.building_id,))
    cur.execute("delete from residents where household_id in (select household_id from households join houses"
                " using (house_id) where building_id = %s) or starts_with(name, %s)", (plot.building_id, plot.tag))
    cur.execute("delete from households where house_id in (select house_id from houses where building_id = %s)",
                (plot.building_id,))
    cur.execute("delete from houses where building_id = %s", (plot.building_id,))
    cur.execute("delete from things where starts_with(thing_id, %s)", (plot.tag,))
    cur.execute("delete from units where starts_with(unit_id, %s) or building_id = %s", (plot.tag, plot.building_id))
    cur.execute("delete from buildings where building_id = %s", (plot.building_id,))


@pytest.fixture
def conn(settings):
    connection = psycopg2.connect(settings.pg_dsn)
    yield connection
    connection.close()


@pytest.fixture
def plot(conn, city):
    grid = city.grids[GRID_INDEX]
    building = next(b for b in city.buildings if b.grid_code == grid.code)
    tag = f"t-ldg-{uuid.uuid4().hex[:8]}"
    planted = Plot(tag, grid.code, grid.community_code, f"{tag}-bldg", building.lon, building.lat)
    with conn, conn.cursor() as cur:
        cur.execute("insert into buildings (building_id, grid_code, name, lon, lat, floors, households)"
                    " values (%s, %s, %s, %s, %s, 6, 12)", (planted.building_id, grid.code, f"{tag} 测试楼",
                                                              building.lon, building.lat))
    yield planted
    conn.rollback()
    with conn, conn.cursor() as cur:
        remove_plot(cur, planted)


@pytest.fixture
def sealer():
    return Sealer(privacy.new_key())


def a_house(cur, plot: Plot, number: str = "501", use: HouseUse = HouseUse.OWNER_OCCUPIED) -> int:
    return store.add_house(cur, House(plot.building_id, 1, 5, number, use, 89.5), plot.actor())


def a_resident(plot: Plot, household_id: int | None, **fields) -> Resident:
    born = fields.pop("birth_date", date(1950, 4, 1))
    values = {"relation": Relation.HEAD, "name": f"{plot.tag}王秀英", "gender": Gender.FEMALE,
              "registration": Registration.LOCAL, "birth_date": born, "id_number": fresh_id(born),
              "phone": fresh_phone(), "moved_in": date(1975, 1, 1), **fields}
    return Resident(household_id, **values)


def clear_anywhere(cur, text: str) -> list[str]:
    """Where `text` is found in clear: any column of a resident or a unit, history or submission
    (as text, and its bytes inside the bytea columns)."""
    found = []
    checks = {
        "residents": "select count(*) from residents r where position(%(t)s in r::text) > 0"
                     " or position(convert_to(%(t)s, 'UTF8') in coalesce(id_number_sealed, '')) > 0"
                     " or position(convert_to(%(t)s, 'UTF8') in coalesce(phone_sealed, '')) > 0"
                     " or position(encode(convert_to(%(t)s, 'UTF8'), 'hex') in r::text) > 0",
        "units": "select count(*) from units u where position(%(t)s in u::text) > 0"
                 " or position(encode(convert_to(%(t)s, 'UTF8'), 'hex') in u::text) > 0",
        "ledger_changes": "select count(*) from ledger_changes where position(%(t)s in coalesce(before::text, '')) > 0"
                          " or position(%(t)s in coalesce(after::text, '')) > 0",
        "ledger_submissions": "select count(*) from ledger_submissions s where position(%(t)s in s::text) > 0",
    }
    for table, sql in checks.items():
        cur.execute(sql, {"t": text})
        if cur.fetchone()[0]:
            found.append(table)
    return found


def test_a_resident_s_history_names_every_change_its_version_who_and_channel(conn, plot, sealer):
    phone2 = fresh_phone()
    with conn, conn.cursor() as cur:
        house_id = a_house(cur, plot)
        household_id = store.add_household(cur, house_id, plot.actor())
        resident = a_resident(plot, household_id, tags=frozenset({Tag.ELDERLY_ALONE}))
        resident_id = store.add_resident(cur, sealer, resident, plot.actor())
        store.set_head(cur, household_id, resident_id, plot.actor())
        assert store.update_resident(cur, sealer, resident_id, {"phone": phone2}, plot.actor("li")) == 2
        assert store.set_tags(cur, resident_id, {Tag.ELDERLY_ALONE, Tag.DISABLED},
                              plot.actor("job", Channel.IMPORT)) == 3
        changes = store.history(cur, RecordKind.RESIDENT, resident_id)
        household = store.history(cur, RecordKind.HOUSEHOLD, household_id)
        house = store.history(cur, RecordKind.HOUSE, house_id)
    assert [(c.version, c.action) for c in changes] == [
        (1, ChangeAction.CREATE), (2, ChangeAction.UPDATE), (3, ChangeAction.UPDATE)]
    assert [c.changed_by for c in changes] == [f"{plot.tag}-clerk", f"{plot.tag}-li", f"{plot.tag}-job"]
    assert [c.channel for c in changes] == [Channel.SCREEN, Channel.SCREEN, Channel.IMPORT]
    assert changes[0].before is None and changes[0].after["grid_code"] == plot.grid_code
    assert changes[0].after["tags"] == [Tag.ELDERLY_ALONE.value]
    assert changes[1].before["phone"]["masked"] == privacy.mask_phone(resident.phone)
    assert sealer.open_field(PHONE, changes[1].after["phone"]) == phone2          # sealed, and only sealed
    assert sealer.open_field(ID_NUMBER, changes[1].after["id_number"]) == resident.id_number
    assert changes[1].after["id_number"] == changes[1].before["id_number"]        # unchanged stays as it was
    assert changes[2].after["tags"] == sorted([Tag.DISABLED.value, Tag.ELDERLY_ALONE.value])
    assert [(c.version, c.action, c.after["head_id"]) for c in household] == [
        (1, ChangeAction.CREATE, None), (2, ChangeAction.UPDATE, resident_id)]
    assert [(c.version, c.after["use"], c.after["grid_code"]) for c in house] == [
        (1, HouseUse.OWNER_OCCUPIED.value, plot.grid_code)]
    with conn.cursor() as cur:
        for secret in (resident.id_number, resident.phone, phone2):
            assert clear_anywhere(cur, secret) == []
        cur.execute("select id_number_masked, phone_masked, id_number_index from residents where resident_id = %s",
                    (resident_id,))
        masked_id, masked_phone, index = cur.fetchone()
    assert masked_id == privacy.mask_id_number(resident.id_number) and masked_phone == privacy.mask_phone(phone2)
    assert bytes(index) == sealer.index(ID_NUMBER, resident.id_number)


def test_a_stale_expected_version_is_refused_and_changes_nothing(conn, plot):
    with conn, conn.cursor() as cur:
        house_id = a_house(cur, plot)
        assert store.set_house_use(cur, house_id, HouseUse.RENTED, plot.actor(), expected_version=1) == 2
    with conn, conn.cursor() as cur:
        with pytest.raises(Refused) as refused:
            store.set_house_use(cur, house_id, HouseUse.VACANT, plot.actor("late"), expected_version=1)
        assert refused.value.code == "stale_version" and "version 2" in refused.value.detail
    with conn.cursor() as cur:
        cur.execute("select use, version from houses where house_id = %s", (house_id,))
        assert cur.fetchone() == (HouseUse.RENTED.value, 2)
        assert [c.version for c in store.history(cur, RecordKind.HOUSE, house_id)] == [1, 2]


def test_of_two_reviewers_changing_one_record_at_once_the_first_to_commit_wins(conn, plot, settings):
    with conn, conn.cursor() as cur:
        house_id = a_house(cur, plot)
    second = psycopg2.connect(settings.pg_dsn)
    outcome: list = []

    def second_reviewer() -> None:
        try:
            with second, second.cursor() as cur:
                store.set_house_use(cur, house_id, HouseUse.VACANT, plot.actor("second"), expected_version=1)
            outcome.append("applied")
        except Refused as refused:
            outcome.append(refused.code)

    try:
        with conn, conn.cursor() as cur:
            store.set_house_use(cur, house_id, HouseUse.RENTED, plot.actor("first"), expected_version=1)
            racer = threading.Thread(target=second_reviewer)
            racer.start()          # it waits for the first's lock, or comes after its commit: stale either way
        racer.join()
    finally:
        second.close()
    assert outcome == ["stale_version"]
    with conn.cursor() as cur:
        cur.execute("select use from houses where house_id = %s", (house_id,))
        assert cur.fetchone()[0] == HouseUse.RENTED.value


@pytest.mark.parametrize(("fields", "code", "words"), [
    ({"id_number": "350102195004010011"}, "bad_id_number", "check digit"),
    ({"id_number": id_number(date(1951, 4, 1), 7)}, "bad_id_number", "birth date is not the resident's"),
    ({"phone": "13x"}, "bad_phone", "digits"),
    ({"relation": "cousin"}, "bad_value", "relation"),
    ({"moved_out": date(1970, 1, 1)}, "bad_value", "before moving in"),
    ({"name": "  "}, "bad_value", "name"),
])
def test_a_bad_value_is_refused_with_its_reason(conn, plot, sealer, fields, code, words):
    with conn, conn.cursor() as cur:
        household_id = store.add_household(cur, a_house(cur, plot), plot.actor())
    with conn, conn.cursor() as cur, pytest.raises(Refused) as refused:
        store.add_resident(cur, sealer, a_resident(plot, household_id, **fields), plot.actor())
    assert refused.value.code == code and words in str(refused.value)


def test_an_update_checks_the_id_number_against_a_new_birth_date(conn, plot, sealer):
    with conn, conn.cursor() as cur:
        household_id = store.add_household(cur, a_house(cur, plot), plot.actor())
        resident_id = store.add_resident(cur, sealer, a_resident(plot, household_id), plot.actor())
    with conn, conn.cursor() as cur, pytest.raises(Refused) as refused:
        store.update_resident(cur, sealer, resident_id, {"birth_date": "1950-04-02"}, plot.actor())
    assert refused.value.code == "bad_id_number"
    with conn, conn.cursor() as cur, pytest.raises(Refused, match="no field"):
        store.update_resident(cur, sealer, resident_id, {"religion": "x"}, plot.actor())


def test_parts_and_shops_have_their_history_and_a_shop_s_phone_is_sealed(conn, plot, sealer):
    phone = fresh_phone()
    thing = Thing(f"{plot.tag}-hydrant", ThingKind.HYDRANT, plot.grid_code, plot.lon, plot.lat, "消防大队")
    shop = Shop(plot.grid_code, f"{plot.tag}便利店", "retail", plot.lon, plot.lat, unit_id=f"{plot.tag}-shop",
                building_id=plot.building_id, contact_name="张三", contact_phone=phone, fire_key_unit=True)
    with conn, conn.cursor() as cur:
        store.add_thing(cur, thing, plot.actor())
        assert store.set_thing_state(cur, thing.thing_id, ThingState.DAMAGED, plot.actor("member"), 1) == 2
        unit_id = store.add_unit(cur, sealer, shop, plot.actor())
        with pytest.raises(Refused) as refused:
            store.add_thing(cur, thing, plot.actor())
        assert refused.value.code == "duplicate_thing"
    with conn.cursor() as cur:
        things = store.history(cur, RecordKind.THING, thing.thing_id)
        units = store.history(cur, RecordKind.UNIT, unit_id)
        assert clear_anywhere(cur, phone) == []
    assert [(c.version, c.after["state"]) for c in things] == [(1, ThingState.GOOD.value),
                                                              (2, ThingState.DAMAGED.value)]
    assert things[1].after["lon"] == pytest.approx(plot.lon)
    assert units[0].after["fire_key_unit"] is True
    assert sealer.open_field(PHONE, units[0].after["contact_phone"]) == phone


def test_the_moved_out_deletion_deletes_only_those_past_its_date_and_erases_their_history(conn, plot, sealer):
    """Moved-out dates in 1970 keep other tests' residents out of this run of the job."""
    with conn, conn.cursor() as cur:
        house_id = a_house(cur, plot)
        household_id = store.add_household(cur, house_id, plot.actor())
        gone = a_resident(plot, household_id, moved_in=date(1965, 1, 1), tags=frozenset({Tag.VETERAN}))
        gone_id = store.add_resident(cur, sealer, gone, plot.actor())
        store.set_head(cur, household_id, gone_id, plot.actor())
        store.move_out(cur, gone_id, date(1970, 3, 1), plot.actor())
        later = a_resident(plot, household_id, relation=Relation.SPOUSE, moved_in=date(1965, 1, 1))
        later_id = store.add_resident(cur, sealer, later, plot.actor())
        store.move_out(cur, later_id, date(1970, 9, 1), plot.actor())
        staying_id = store.add_resident(cur, sealer, a_resident(plot, household_id, relation=Relation.CHILD),
                                        plot.actor())
    with conn, conn.cursor() as cur:
        assert store.delete_moved_out(cur, date(1970, 6, 1), plot.actor("deletion", Channel.JOB)) == 1
    with conn.cursor() as cur:
        cur.execute("select resident_id from residents where resident_id = any(%s) order by 1",
                    ([gone_id, later_id, staying_id],))
        assert [r for (r,) in cur.fetchall()] == sorted([later_id, staying_id])
        cur.execute("select count(*) from resident_tags where resident_id = %s", (gone_id,))
        assert cur.fetchone()[0] == 0
        for secret in (gone.id_number, gone.phone, gone.name):
            cur.execute("select count(*) from ledger_changes where record_kind = %s and record_id = %s and"
                        " position(%s in coalesce(before::text, '') || coalesce(after::text, '')) > 0",
                        (RecordKind.RESIDENT.value, str(gone_id), secret))
            assert cur.fetchone()[0] == 0, "the deleted resident's history keeps no personal data"
        history = store.history(cur, RecordKind.RESIDENT, gone_id)
        kept = store.history(cur, RecordKind.RESIDENT, later_id)
        household = store.history(cur, RecordKind.HOUSEHOLD, household_id)
    assert [(c.version, c.action) for c in history] == [(1, ChangeAction.CREATE), (2, ChangeAction.UPDATE),
                                                        (3, ChangeAction.DELETE)]
    assert history[-1].channel is Channel.JOB and history[-1].changed_by == f"{plot.tag}-deletion"
    assert all(c.after is None or c.after.get("erased") is True for c in history)
    assert history[0].after["household_id"] == household_id and "id_number" not in history[0].after
    assert kept[0].after["id_number"]["masked"] == privacy.mask_id_number(later.id_number)   # not theirs: kept
    assert household[-1].after == {"head_id": None} and household[-1].before == {"head_id": gone_id}


def test_a_household_s_head_moves_to_another_household_only_after_it_has_another_head(conn, plot, sealer):
    with conn, conn.cursor() as cur:
        house_id = a_house(cur, plot)
        first, second = (store.add_household(cur, house_id, plot.actor()) for _ in range(2))
        head_id = store.add_resident(cur, sealer, a_resident(plot, first), plot.actor())
        store.set_head(cur, first, head_id, plot.actor())
        with pytest.raises(Refused) as refused:
            store.set_head(cur, second, head_id, plot.actor())
        assert refused.value.code == "not_in_household"
    with conn, conn.cursor() as cur, pytest.raises(Refused) as refused:
        store.update_resident(cur, sealer, head_id, {"household_id": second}, plot.actor())
    assert refused.value.code == "is_head" and str(first) in refused.value.detail


def test_a_foreign_resident_s_document_number_is_sealed_by_its_form_not_gb_11643(conn, plot, sealer):
    with conn, conn.cursor() as cur:
        household_id = store.add_household(cur, a_house(cur, plot), plot.actor())
        resident = a_resident(plot, household_id, registration=Registration.FOREIGN, id_number=" e1234 5678 ")
        resident_id = store.add_resident(cur, sealer, resident, plot.actor())
        cur.execute("select id_number_sealed, id_number_masked from residents where resident_id = %s", (resident_id,))
        sealed, masked = cur.fetchone()
        with pytest.raises(Refused) as refused:
            store.add_resident(cur, sealer, a_resident(plot, household_id, registration=Registration.FOREIGN,
                                                       id_number="E1-2"), plot.actor())
    assert sealer.open(ID_NUMBER, sealed) == "E12345678" and masked == privacy.mask_id_number("E12345678")
    assert refused.value.code == "bad_id_number"

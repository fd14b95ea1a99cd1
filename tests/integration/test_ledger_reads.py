"""The basic-data page's reads (ledger.reads) and grants (ledger.grants) against the real database,
as the dashboard's own role reads them: a search finds only the scope's residents (another
community's resident of the same name is not found); ID numbers and phones come out masked, found
only by an exact match through the keyed index (a near miss finds nobody, a malformed one is
refused without repeating it); restricted tags and their mark on the building panel appear only
with their grant, and a grant on an org unit covers what it contains until it is revoked, each
change with its audit row.

The planting (`plant_ledger`) is shared with test_ledger_browser: buildings, houses, households
and residents of our own in two communities of the last street (away from the hostile-text
plantings of the first), sealed with the stack's ledger key, removed after."""
from __future__ import annotations

import secrets
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date

import psycopg2
import pytest

from core.catalogue import AuditAction
from core.ledger import HouseUse, Permission, Registration, Relation, Tag
from core.orgcodes import Scope
from ledger import grants, privacy
from ledger.reads import LedgerReads, SearchError, SearchKind, age_on

from .screens import ensure_logins

LEADER_A = "t-ledger-leader"         # a leader of community A, no grant
GRANTED_A = "t-ledger-granted"       # a leader of community A, granted UNMASK and RESTRICTED_TAGS there
SURNAME = "鞠"
_RUN = secrets.randbelow(900)        # this run's ID numbers' sequence (a leftover of another run never matches)


def id_number(region: str, born: date, seq: int) -> str:
    """A valid mainland ID number (GB 11643: its check character computed)."""
    body = f"{region}{born:%Y%m%d}{seq % 1000:03d}"
    return next(body + c for c in "0123456789X" if privacy.check_id_number(body + c) is None)


@dataclass
class Person:
    name: str
    gender: str
    born: date
    relation: Relation
    registration: Registration = Registration.LOCAL
    tags: tuple[Tag, ...] = ()
    id_number: str | None = None
    phone: str | None = None
    resident_id: int | None = None


@dataclass
class Planted:
    community_a: str
    community_b: str
    grid_a: str
    grid_b: str
    buildings: list[str] = field(default_factory=list)
    houses: dict[str, int] = field(default_factory=dict)           # "<building>/<entrance>-<number>" -> id
    people: dict[str, Person] = field(default_factory=dict)         # a key of ours -> the person


def _person(key: str, name: str, gender: str, born: date, relation: Relation, seq: int, **more) -> tuple[str, Person]:
    return key, Person(name, gender, born, relation, id_number=id_number("350102", born, _RUN + seq),
                       phone=f"139{secrets.randbelow(10 ** 8):08d}", **more)


def _communities(city) -> tuple[str, str, str, str]:
    """Two communities of the last street, and a residential grid of each."""
    street = city.streets[-1].code
    communities = [c.code for c in city.communities if c.code.startswith(street)][:2]
    grids = [next(g.code for g in city.grids if g.community_code == c) for c in communities]
    return communities[0], communities[1], grids[0], grids[1]


def _insert_building(cur, planted: Planted, building_id: str, grid: str, name: str, floors: int, entrances: int):
    cur.execute("insert into buildings (building_id, grid_code, name, lon, lat, floors, households, entrances) "
                "values (%s, %s, %s, 119.3, 26.08, %s, %s, %s)",
                (building_id, grid, name, floors, floors * 2, entrances))
    planted.buildings.append(building_id)


def _insert_house(cur, planted: Planted, building_id: str, grid: str, entrance: int, floor: int, number: str,
                  use: HouseUse) -> int:
    cur.execute("insert into houses (building_id, grid_code, entrance, floor, number, area_m2, use) "
                "values (%s, %s, %s, %s, %s, 88.5, %s) returning house_id",
                (building_id, grid, entrance, floor, number, use.value))
    house_id = cur.fetchone()[0]
    planted.houses[f"{building_id}/{entrance}-{number}"] = house_id
    return house_id


def _insert_household(cur, sealer: privacy.Sealer, house_id: int, grid: str, people: list[Person]) -> None:
    """A household in the house, its members sealed as the ledger keeps them; the first is the head."""
    cur.execute("insert into households (house_id) values (%s) returning household_id", (house_id,))
    household = cur.fetchone()[0]
    for person in people:
        sealed = {}
        for name, value, normalize in ((privacy.ID_NUMBER, person.id_number, privacy.normalize_id_number),
                                       (privacy.PHONE, person.phone, privacy.normalize_phone)):
            value = normalize(value) if value else None
            sealed[name] = (sealer.seal(name, value), sealer.index(name, value),
                            privacy.MASKS[name](value)) if value else (None, None, None)
        cur.execute("insert into residents (household_id, grid_code, relation, name, gender, birth_date, "
                    "id_number_sealed, id_number_index, id_number_masked, phone_sealed, phone_index, phone_masked, "
                    "registration) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) returning resident_id",
                    (household, grid, person.relation.value, person.name, person.gender, person.born,
                     *sealed[privacy.ID_NUMBER], *sealed[privacy.PHONE], person.registration.value))
        person.resident_id = cur.fetchone()[0]
        for tag in person.tags:
            cur.execute("insert into resident_tags (resident_id, tag) values (%s, %s)", (person.resident_id, tag.value))
    cur.execute("update households set head_id = %s where household_id = %s", (people[0].resident_id, household))


def plant_ledger(dsn: str, city, sealer: privacy.Sealer, token: str, hostile_building: str | None = None,
                 hostile_resident: str | None = None) -> Planted:
    """Building A (community A: two entrances, six floors, two houses a floor) with three
    households, building B (community B) with one resident named like one of A's; optionally a
    building and a resident with hostile names in A."""
    planted = Planted(*_communities(city))
    a, b = f"t-ledger-a-{token}", f"t-ledger-b-{token}"
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        _insert_building(cur, planted, a, planted.grid_a, f"测试苑 7号楼 {token}", 6, 2)
        uses = [HouseUse.OWNER_OCCUPIED, HouseUse.RENTED, HouseUse.VACANT, HouseUse.COMMERCIAL]
        for entrance in (1, 2):
            for floor in range(1, 7):
                for n in (1, 2):
                    use = HouseUse.COMMERCIAL if floor == 1 else uses[(floor + n + entrance) % 3]
                    _insert_house(cur, planted, a, planted.grid_a, entrance, floor, f"{floor}0{n}", use)
        people = dict([
            _person("head", f"{SURNAME}建国", "male", date(1950, 3, 7), Relation.HEAD, 11),
            _person("spouse", f"{SURNAME}秀英", "female", date(1952, 8, 1), Relation.SPOUSE, 12, tags=(Tag.DISABLED,)),
            _person("child", f"{SURNAME}晓东", "male", date(1980, 1, 20), Relation.CHILD, 13),
            _person("alone", f"{SURNAME}桂兰", "female", date(1940, 12, 2), Relation.HEAD, 14,
                    tags=(Tag.ELDERLY_ALONE, Tag.LOW_INCOME)),
            _person("tenant", f"{SURNAME}小明", "male", date(1995, 6, 15), Relation.HEAD, 15,
                    registration=Registration.FLOATING, tags=(Tag.COMMUNITY_CORRECTION, Tag.VETERAN)),
            _person("other", f"{SURNAME}建华", "male", date(1960, 4, 4), Relation.HEAD, 16)])
        planted.people = people
        _insert_household(cur, sealer, planted.houses[f"{a}/1-501"], planted.grid_a,
                          [people["head"], people["spouse"], people["child"]])
        _insert_household(cur, sealer, planted.houses[f"{a}/1-302"], planted.grid_a, [people["alone"]])
        _insert_household(cur, sealer, planted.houses[f"{a}/2-201"], planted.grid_a, [people["tenant"]])
        _insert_building(cur, planted, b, planted.grid_b, f"他区花园 1号楼 {token}", 3, 1)
        house_b = _insert_house(cur, planted, b, planted.grid_b, 1, 2, "201", HouseUse.OWNER_OCCUPIED)
        _insert_household(cur, sealer, house_b, planted.grid_b, [people["other"]])
        if hostile_building is not None:
            c = f"t-ledger-c-{token}"
            _insert_building(cur, planted, c, planted.grid_a, hostile_building, 2, 1)
            house_c = _insert_house(cur, planted, c, planted.grid_a, 1, 1, "101", HouseUse.RENTED)
            key, person = _person("hostile", hostile_resident or "x", "female", date(1990, 2, 2), Relation.HEAD, 17)
            people[key] = person
            _insert_household(cur, sealer, house_c, planted.grid_a, [person])
    return planted


def remove_ledger(dsn: str, planted: Planted, users: tuple[str, ...] = ()) -> None:
    """What plant_ledger planted, and the users' grants (audit rows stay: the trail is append-only)."""
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        houses = list(planted.houses.values())
        cur.execute("update households set head_id = null where house_id = any(%s)", (houses,))
        cur.execute("delete from residents where household_id in (select household_id from households "
                    "where house_id = any(%s))", (houses,))
        cur.execute("delete from households where house_id = any(%s)", (houses,))
        cur.execute("delete from houses where house_id = any(%s)", (houses,))
        cur.execute("delete from buildings where building_id = any(%s)", (planted.buildings,))
        cur.execute("delete from ledger_grants where username = any(%s)", (list(users),))


def ledger_sealer(stack) -> privacy.Sealer:
    """The sealer of the stack's ledger key (what the dashboard and the ingest are given)."""
    return privacy.Sealer(stack.app_settings("dashboard").ledger_key.get_secret_value())


def grant_as_admin(dsn: str, username: str, permission: Permission, scope_code: str) -> None:
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        grants.grant(cur, "t-admin", ["admin"], username, permission, scope_code, "tests: the community's ledger")


@pytest.fixture(scope="module")
def planted(stack, city):
    dsn = stack.settings().pg_dsn
    token = secrets.token_hex(3)
    found = plant_ledger(dsn, city, ledger_sealer(stack), token)
    ensure_logins(dsn, {LEADER_A: ("leader", found.community_a), GRANTED_A: ("leader", found.community_a)})
    yield found
    remove_ledger(dsn, found, (LEADER_A, GRANTED_A))


@pytest.fixture(scope="module")
def reads(stack, city):
    """The reads on the dashboard's own database role, with the stack's key."""
    settings = stack.app_settings("dashboard")
    found = LedgerReads(city, settings.pg_dsn, ledger_sealer(stack))
    yield found
    found.db.closeall()


def _scope(code: str) -> Scope:
    return Scope(code, code)


def _ids(found) -> set[int]:
    return {r.resident_id for r in found}


def test_a_name_search_finds_only_the_scopes_residents(planted, reads):
    people = planted.people
    in_a, _ = reads.search(_scope(planted.community_a), LEADER_A, SearchKind.NAME, f"{SURNAME}建")
    in_b, _ = reads.search(_scope(planted.community_b), LEADER_A, SearchKind.NAME, f"{SURNAME}建")
    city_wide, _ = reads.search(_scope(""), LEADER_A, SearchKind.NAME, f"{SURNAME}建")
    assert people["head"].resident_id in _ids(in_a) and people["other"].resident_id not in _ids(in_a)
    assert _ids(in_b) & _ids(people.values()) == {people["other"].resident_id}
    assert {people["head"].resident_id, people["other"].resident_id} <= _ids(city_wide)
    head = next(r for r in in_a if r.resident_id == people["head"].resident_id)
    assert (head.age, head.entrance, head.house_number) == (age_on(date(1950, 3, 7), date.today()), 1, "501")


def test_results_are_masked_and_carry_no_value_in_full(planted, reads):
    found, _ = reads.search(_scope(planted.community_a), LEADER_A, SearchKind.NAME, SURNAME)
    head = next(r for r in found if r.resident_id == planted.people["head"].resident_id)
    person = planted.people["head"]
    assert head.id_number_masked == privacy.mask_id_number(person.id_number)
    assert head.phone_masked == privacy.mask_phone(person.phone)
    everything = repr(found)
    assert all(p.id_number not in everything and p.phone not in everything for p in planted.people.values())


def test_an_exact_id_number_or_phone_finds_one_resident_and_a_near_miss_none(planted, reads):
    person, scope = planted.people["spouse"], _scope(planted.community_a)
    by_id, _ = reads.search(scope, LEADER_A, SearchKind.ID_NUMBER, f" {person.id_number.lower()} ")
    by_phone, _ = reads.search(scope, LEADER_A, SearchKind.PHONE, f"+86 {person.phone[:3]} {person.phone[3:]}")
    assert _ids(by_id) == {person.resident_id} == _ids(by_phone)
    region = person.id_number[:5] + str((int(person.id_number[5]) + 1) % 10)
    near_id = id_number(region, person.born, int(person.id_number[14:17]))   # valid, one digit off
    near_phone = person.phone[:-1] + str((int(person.phone[-1]) + 1) % 10)
    assert reads.search(scope, LEADER_A, SearchKind.ID_NUMBER, near_id)[0] == []
    assert reads.search(scope, LEADER_A, SearchKind.PHONE, near_phone)[0] == []
    other = planted.people["other"]                            # community B's, asked in A
    assert reads.search(scope, LEADER_A, SearchKind.ID_NUMBER, other.id_number)[0] == []


def test_a_malformed_search_is_refused_without_repeating_what_was_typed(planted, reads):
    scope = _scope(planted.community_a)
    for kind, text in ((SearchKind.ID_NUMBER, "35010219500307"), (SearchKind.PHONE, "call 139-x"),
                       (SearchKind.NAME, "   "), ("nickname", "x"), (SearchKind.NAME, "x" * 101)):
        with pytest.raises(SearchError) as refused:
            reads.search(scope, LEADER_A, kind, text)
        assert str(refused.value) and (not text.strip() or text not in str(refused.value))


def test_an_address_finds_a_buildings_residents_or_one_house(planted, reads):
    scope, token = _scope(planted.community_a), planted.buildings[0].rsplit("-", 1)[1]
    building, _ = reads.search(scope, LEADER_A, SearchKind.ADDRESS, f"7号楼 {token}")
    house, _ = reads.search(scope, LEADER_A, SearchKind.ADDRESS, f"7号楼 {token} 302")
    assert _ids(building) == {planted.people[k].resident_id for k in ("head", "spouse", "child", "alone", "tenant")}
    assert _ids(house) == {planted.people["alone"].resident_id}
    assert reads.search(_scope(planted.community_b), LEADER_A, SearchKind.ADDRESS, f"7号楼 {token}")[0] == []


def test_restricted_tags_and_their_mark_only_with_the_grant(stack, planted, reads):
    scope, tenant = _scope(planted.community_a), planted.people["tenant"]
    building_a = planted.buildings[0]
    try:
        plain = reads.resident(scope, LEADER_A, tenant.resident_id)
        grant_as_admin(stack.settings().pg_dsn, GRANTED_A, Permission.RESTRICTED_TAGS, planted.community_a)
        granted = reads.resident(scope, GRANTED_A, tenant.resident_id)
        marks_plain = {h.number: h for h in reads.building(scope, LEADER_A, building_a).houses if h.entrance == 2}
        marks_granted = {h.number: h for h in reads.building(scope, GRANTED_A, building_a).houses if h.entrance == 2}
    finally:
        with closing(psycopg2.connect(stack.settings().pg_dsn)) as conn, conn, conn.cursor() as cur:
            cur.execute("delete from ledger_grants where username = %s", (GRANTED_A,))
    assert plain.tags == (Tag.VETERAN,) and set(granted.tags) == {Tag.COMMUNITY_CORRECTION, Tag.VETERAN}
    assert not marks_plain["201"].restricted and marks_granted["201"].restricted
    assert reads.resident(scope, GRANTED_A, tenant.resident_id).tags == (Tag.VETERAN,)    # grant gone: hidden again


def test_the_building_panel_lists_floors_from_the_top_and_marks_who_needs_help(planted, reads):
    scope = _scope(planted.community_a)
    building = reads.building(scope, LEADER_A, planted.buildings[0])
    assert (building.floors, building.entrances, len(building.houses)) == (6, 2, 24)
    first = building.houses[:4]
    assert [(h.entrance, h.floor, h.number) for h in first] == [(1, 6, "601"), (1, 6, "602"), (1, 5, "501"),
                                                                 (1, 5, "502")]
    by_key = {(h.entrance, h.number): h for h in building.houses}
    assert by_key[(1, "501")].needs_help and by_key[(1, "302")].needs_help and not by_key[(2, "201")].needs_help
    assert by_key[(1, "501")].residents == 3 and by_key[(1, "101")].use is HouseUse.COMMERCIAL
    assert reads.building(_scope(planted.community_b), LEADER_A, planted.buildings[0]) is None


def test_a_house_shows_its_household_head_first(planted, reads):
    scope = _scope(planted.community_a)
    detail = reads.house(scope, LEADER_A, planted.houses[f"{planted.buildings[0]}/1-501"])
    [household] = detail.households
    assert [r.relation for r in household.residents] == [Relation.HEAD, Relation.SPOUSE, Relation.CHILD]
    assert household.residents[1].tags == (Tag.DISABLED,) and detail.house.needs_help
    assert reads.house(_scope(planted.community_b), LEADER_A, detail.house.house_id) is None


def test_a_grant_covers_what_its_org_unit_contains_until_revoked_each_audited(stack, planted):
    dsn = stack.settings().pg_dsn
    street = planted.community_a[:9]
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        try:
            assert not grants.holds(cur, GRANTED_A, Permission.UNMASK, planted.grid_a)
            grants.grant(cur, "t-admin", ["admin"], GRANTED_A, Permission.UNMASK, street, "audit of the street")
            held = [grants.holds(cur, GRANTED_A, Permission.UNMASK, code)
                    for code in (planted.grid_a, planted.community_b, street, street[:6])]
            other_permission = grants.holds(cur, GRANTED_A, Permission.RESTRICTED_TAGS, planted.grid_a)
            grants.revoke(cur, "t-admin", ["admin"], GRANTED_A, Permission.UNMASK, street, "audit done")
            after = grants.holds(cur, GRANTED_A, Permission.UNMASK, planted.grid_a)
            with pytest.raises(grants.GrantError, match="holds no unmask grant"):
                grants.revoke(cur, "t-admin", ["admin"], GRANTED_A, Permission.UNMASK, street, "again")
            for bad in (("read_all", street, "x"), (Permission.UNMASK, "12", "x"), (Permission.UNMASK, street, " "),
                        (Permission.UNMASK, street, "x" * 201)):
                with pytest.raises(grants.GrantError):
                    grants.grant(cur, "t-admin", ["admin"], GRANTED_A, *bad)
            cur.execute("select action, reason, scope_code from audit_log where target = %s and action = any(%s) "
                        "order by id desc limit 2",
                        (f"user:{GRANTED_A}", [AuditAction.LEDGER_GRANT.value, AuditAction.LEDGER_REVOKE.value]))
            trail = cur.fetchall()
        finally:
            cur.execute("delete from ledger_grants where username = %s", (GRANTED_A,))
    assert held == [True, True, True, False] and not other_permission and not after
    assert trail == [(AuditAction.LEDGER_REVOKE.value, "audit done", street),
                     (AuditAction.LEDGER_GRANT.value, "audit of the street", street)]


def test_an_operator_grants_and_revokes_from_the_command_line(stack, planted, capsys):
    dsn, scope = stack.settings().pg_dsn, planted.community_a
    change = ["--scope", scope, "--reason", "tests: the operator's way"]
    try:
        assert grants.main(["grant", GRANTED_A, Permission.UNMASK.value, *change], dsn=dsn) == 0
        assert grants.main(["list", GRANTED_A], dsn=dsn) == 0
        listed = capsys.readouterr().out
        with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
            held = grants.holds(cur, GRANTED_A, Permission.UNMASK, planted.grid_a)
        assert grants.main(["revoke", GRANTED_A, Permission.UNMASK.value, *change], dsn=dsn) == 0
        assert grants.main(["revoke", GRANTED_A, Permission.UNMASK.value, *change], dsn=dsn) == 2
        assert grants.main(["grant", "t-nobody-here", Permission.UNMASK.value, *change], dsn=dsn) == 2
    finally:
        with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
            cur.execute("delete from ledger_grants where username = %s", (GRANTED_A,))
    assert held and f"unmask\t{scope}\tcli" in listed
    assert "holds no unmask grant" in capsys.readouterr().err

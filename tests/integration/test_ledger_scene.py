"""Who needs help first at a scene (ledger.scene) against the real database, as the dashboard's own
role reads it: the residents of a building tagged elderly living alone, disabled or left-behind
child — with floor, house, age, only those tags and a masked phone — for a dispatcher, leader or
admin whose scope contains the building; the count only for another scope's viewer or a wall
viewer; never a restricted tag, an ID number, a moved-out resident or a resident with other tags
only. A case finds its building by a link, by its alarm's sensor, or as the nearest building within
30 m of its position.

The planting (`plant_scene`, `plant_case`) is shared with test_ledger_scene_browser: a building of
our own in a grid of community A and one in community B (the second street), houses and sealed
residents, and cases at them; removed after (a case is refused: its events are append-only)."""
from __future__ import annotations

import math
import secrets
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import psycopg2
import pytest

from cases import store as case_store
from cases.intake import INTAKE
from cases.limits import Urgency
from cases.machine import apply, open_case
from cases.model import Actor, ActorKind, Refuse, Source
from core.ledger import RESTRICTED_TAGS, HouseUse, RecordKind, Registration, Relation, Tag
from core.roles import UserRole
from ledger import privacy, scene

from .test_cases_engine import seeded
from .test_ledger_reads import Person, id_number, ledger_sealer

NAMES = "景"      # every planted name starts with it


@dataclass
class ScenePlot:
    community_a: str
    community_b: str
    street: str
    grid_a: str
    grid_b: str
    building_a: str
    building_b: str
    point_a: tuple[float, float]
    point_b: tuple[float, float]
    houses: list[int] = field(default_factory=list)
    people: dict[str, Person] = field(default_factory=dict)
    cases: list[str] = field(default_factory=list)


def _where(city) -> tuple[str, str, str, str, str]:
    """Two communities of the second street, and a residential grid of each."""
    street = city.streets[1].code
    communities = [c.code for c in city.communities if c.code.startswith(street)][:2]
    grids = [next(g.code for g in city.grids if g.community_code == c) for c in communities]
    return street, communities[0], communities[1], grids[0], grids[1]


def _seal(sealer, name: str, value: str | None, normalize) -> tuple:
    if not value:
        return None, None, None
    value = normalize(value)
    return sealer.seal(name, value), sealer.index(name, value), privacy.MASKS[name](value)


def _house(cur, plot: ScenePlot, building: str, grid: str, entrance: int, floor: int, number: str) -> int:
    cur.execute("insert into houses (building_id, grid_code, entrance, floor, number, area_m2, use) values "
                "(%s, %s, %s, %s, %s, 70, %s) returning house_id",
                (building, grid, entrance, floor, number, HouseUse.OWNER_OCCUPIED.value))
    plot.houses.append(cur.fetchone()[0])
    return plot.houses[-1]


def _household(cur, sealer, house_id: int, grid: str, people: list[Person], moved_out: date | None = None) -> None:
    cur.execute("insert into households (house_id) values (%s) returning household_id", (house_id,))
    household = cur.fetchone()[0]
    for person in people:
        cur.execute("insert into residents (household_id, grid_code, relation, name, gender, birth_date, "
                    "id_number_sealed, id_number_index, id_number_masked, phone_sealed, phone_index, phone_masked, "
                    "registration, moved_out) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "returning resident_id",
                    (household, grid, person.relation.value, person.name, person.gender, person.born,
                     *_seal(sealer, privacy.ID_NUMBER, person.id_number, privacy.normalize_id_number),
                     *_seal(sealer, privacy.PHONE, person.phone, privacy.normalize_phone),
                     person.registration.value, moved_out))
        person.resident_id = cur.fetchone()[0]
        for tag in person.tags:
            cur.execute("insert into resident_tags values (%s, %s)", (person.resident_id, tag.value))
    cur.execute("update households set head_id = %s where household_id = %s", (people[0].resident_id, household))


def _person(name: str, born: date, relation: Relation, seq: int, *tags: Tag, gender: str = "female") -> Person:
    return Person(NAMES + name, gender, born, relation, Registration.LOCAL, tags,
                  id_number("350102", born, 700 + secrets.randbelow(280) + seq), f"137{secrets.randbelow(10**8):08d}")


def plant_scene(dsn: str, city, sealer, token: str) -> ScenePlot:
    """Building A (community A, two entrances) with who needs help first and who does not; building
    B (community B) with one elderly resident living alone."""
    street, community_a, community_b, grid_a, grid_b = _where(city)
    pa = city.grid_by_code[grid_a].boundary.representative_point()
    pb = city.grid_by_code[grid_b].boundary.representative_point()
    plot = ScenePlot(community_a, community_b, street, grid_a, grid_b, f"t-scene-a-{token}", f"t-scene-b-{token}",
                     (round(pa.x, 7), round(pa.y, 7)), (round(pb.x, 7), round(pb.y, 7)))
    people = plot.people
    people.update(alone=_person("秀兰", date(1938, 5, 2), Relation.HEAD, 1, Tag.ELDERLY_ALONE, Tag.LOW_INCOME),
                  disabled=_person("建国", date(1975, 1, 9), Relation.HEAD, 2, Tag.DISABLED, Tag.COMMUNITY_CORRECTION,
                                   gender="male"),
                  spouse=_person("丽", date(1977, 3, 3), Relation.SPOUSE, 3),
                  grandma=_person("奶奶", date(1952, 7, 7), Relation.HEAD, 4, Tag.VETERAN),
                  child=_person("小雨", date(2016, 9, 1), Relation.GRANDCHILD, 5, Tag.LEFT_BEHIND_CHILD),
                  watched=_person("某", date(1980, 2, 2), Relation.HEAD, 6, Tag.PETITION_KEY_PERSON, gender="male"),
                  gone=_person("桂英", date(1930, 1, 1), Relation.HEAD, 7, Tag.ELDERLY_ALONE),
                  other=_person("伯", date(1940, 4, 4), Relation.HEAD, 8, Tag.ELDERLY_ALONE, gender="male"))
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        for building, grid, (lon, lat), name in ((plot.building_a, grid_a, plot.point_a, f"景和苑 3号楼 {token}"),
                                                 (plot.building_b, grid_b, plot.point_b, f"他区景园 1号楼 {token}")):
            cur.execute("insert into buildings (building_id, grid_code, name, lon, lat, floors, households, entrances)"
                        " values (%s, %s, %s, %s, %s, 6, 12, 2)", (building, grid, name, lon, lat))
        a = plot.building_a
        _household(cur, sealer, _house(cur, plot, a, grid_a, 1, 5, "501"), grid_a, [people["alone"]])
        _household(cur, sealer, _house(cur, plot, a, grid_a, 1, 3, "302"), grid_a, [people["disabled"],
                                                                                      people["spouse"]])
        _household(cur, sealer, _house(cur, plot, a, grid_a, 2, 2, "201"), grid_a, [people["grandma"],
                                                                                      people["child"]])
        _household(cur, sealer, _house(cur, plot, a, grid_a, 2, 6, "601"), grid_a, [people["watched"]])
        _household(cur, sealer, _house(cur, plot, a, grid_a, 1, 1, "101"), grid_a, [people["gone"]],
                   moved_out=date(2020, 5, 1))
        _household(cur, sealer, _house(cur, plot, plot.building_b, grid_b, 1, 4, "402"), grid_b, [people["other"]])
    return plot


def plant_case(stack, plot: ScenePlot, lon: float, lat: float, title: str) -> str:
    """A reported fire-hazard case of grid A at (lon, lat), as the cases engine stores one."""
    settings = seeded(stack)
    now = datetime.now(timezone.utc)
    with closing(psycopg2.connect(settings.pg_dsn)) as conn, conn, conn.cursor() as cur:
        rules = case_store.load_rules(cur)
        case_id = case_store.next_case_id(cur, now)
        outcome = open_case(case_id, "fire_hazard", Urgency.URGENT, Source.REPORT, plot.grid_a, plot.grid_a, INTAKE,
                            now, rules, title=title, place=title, lat=lat, lon=lon)
        case_store.insert(cur, outcome.case, rules)
        case_store.add_events(cur, outcome.events)
    plot.cases.append(case_id)
    return case_id


def remove_scene(stack, plot: ScenePlot) -> None:
    """The planted ledger (as the owner) and the cases, refused (the cases engine's role)."""
    dsn = stack.settings().pg_dsn
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute("delete from case_subjects where case_id = any(%s)", (plot.cases,))
        cur.execute("update households set head_id = null where house_id = any(%s)", (plot.houses,))
        cur.execute("delete from residents where household_id in (select household_id from households "
                    "where house_id = any(%s))", (plot.houses,))
        cur.execute("delete from households where house_id = any(%s)", (plot.houses,))
        cur.execute("delete from houses where house_id = any(%s)", (plot.houses,))
        cur.execute("delete from buildings where building_id = any(%s)", ([plot.building_a, plot.building_b],))
    if plot.cases:
        dispatcher = Actor(ActorKind.USER, "t-dispatcher", frozenset({"dispatcher"}), "")
        with closing(psycopg2.connect(seeded(stack).pg_dsn)) as conn, conn, conn.cursor() as cur:
            rules = case_store.load_rules(cur)
            for case_id in plot.cases:
                outcome = apply(case_store.load(cur, case_id), Refuse("the scene test is over"), dispatcher,
                                datetime.now(timezone.utc), rules)
                case_store.save(cur, outcome.case, rules)
                case_store.add_events(cur, outcome.events)


@pytest.fixture(scope="module")
def plot(stack, city):
    planted = plant_scene(stack.settings().pg_dsn, city, ledger_sealer(stack), secrets.token_hex(3))
    yield planted
    remove_scene(stack, planted)


@pytest.fixture(scope="module")
def rows(stack):
    """rows(sql, params) on the dashboard's own database role (what the screens read with)."""
    conn = psycopg2.connect(stack.app_settings("dashboard").pg_dsn)

    def read(sql, params):
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    yield read
    conn.close()


def _age(born: date) -> int:
    today = date.today()
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def test_a_dispatcher_of_the_scope_sees_who_needs_help_first_where_they_live(plot, rows):
    found = scene.scene(rows, plot.building_a, UserRole.DISPATCHER, plot.community_a)
    people = plot.people
    assert found.names_shown and found.count == 3
    assert [(p.name, p.tags, p.entrance, p.floor, p.house_number) for p in found.people] == [
        (people["alone"].name, (Tag.ELDERLY_ALONE,), 1, 5, "501"),
        (people["disabled"].name, (Tag.DISABLED,), 1, 3, "302"),
        (people["child"].name, (Tag.LEFT_BEHIND_CHILD,), 2, 2, "201")]
    assert [p.age for p in found.people] == [_age(people[k].born) for k in ("alone", "disabled", "child")]
    assert found.people[0].phone_masked == privacy.mask_phone(people["alone"].phone)
    assert found.by_tag == {Tag.ELDERLY_ALONE: 1, Tag.DISABLED: 1, Tag.LEFT_BEHIND_CHILD: 1}


def test_no_restricted_tag_id_number_full_phone_or_moved_out_resident_is_read(plot, rows):
    found = scene.scene(rows, plot.building_a, UserRole.ADMIN, "")
    text = repr(found)
    for key in ("spouse", "grandma", "watched", "gone"):
        assert plot.people[key].name not in text
    for person in plot.people.values():
        assert person.id_number not in text and person.phone not in text
        assert privacy.mask_id_number(person.id_number) not in text
    assert not any(RESTRICTED_TAGS & set(p.tags) for p in found.people)
    assert not any(tag.value in text for tag in RESTRICTED_TAGS)


@pytest.mark.parametrize("role", [UserRole.LEADER, UserRole.ADMIN, UserRole.DISPATCHER])
def test_every_handling_role_of_a_scope_containing_the_building_sees_names(plot, rows, role):
    for scope in ("", plot.street, plot.community_a, plot.grid_a):
        assert scene.scene(rows, plot.building_a, role, scope).names_shown


def test_another_scopes_viewer_and_a_wall_viewer_get_the_count_only(plot, rows):
    for role, scope in ((UserRole.DISPATCHER, plot.community_b), (UserRole.LEADER, plot.grid_b),
                        (UserRole.WALL_VIEWER, ""), (UserRole.WALL_VIEWER, plot.community_a), (None, ""),
                        ("not-a-role", ""), (UserRole.DISPATCHER, None)):
        found = scene.scene(rows, plot.building_a, role, scope)
        assert found.people is None and found.count == 3, (role, scope)
    other = scene.scene(rows, plot.building_b, UserRole.DISPATCHER, plot.community_a)
    assert other.people is None and other.count == 1 and other.by_tag == {Tag.ELDERLY_ALONE: 1}
    assert scene.scene(rows, plot.building_b, UserRole.DISPATCHER, plot.community_b).people[0].name == \
        plot.people["other"].name


def test_an_unknown_building_has_no_scene(rows):
    assert scene.scene(rows, "t-scene-no-such-building", UserRole.ADMIN, "") is None


def _moved(lon: float, lat: float, metres_east: float) -> tuple[float, float]:
    return lon + metres_east / (111_320 * math.cos(math.radians(lat))), lat


def test_a_position_finds_the_nearest_building_within_thirty_metres(plot, rows):
    lon, lat = plot.point_a
    assert scene.building_near(rows, lon, lat) == plot.building_a
    assert scene.building_near(rows, *_moved(lon, lat, 25)) == plot.building_a
    assert scene.building_near(rows, *_moved(lon, lat, 45)) != plot.building_a


def test_a_case_finds_its_building_by_link_by_sensor_or_by_position(stack, city, plot, rows):
    at_a = plant_case(stack, plot, *_moved(*plot.point_a, 10), "scene test: near building A")
    assert scene.building_of_case(rows, at_a) == plot.building_a
    with closing(psycopg2.connect(stack.settings().pg_dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute("insert into case_subjects (case_id, subject_kind, subject_id, linked_by) values (%s, %s, %s, %s)",
                    (at_a, RecordKind.HOUSE.value, str(plot.houses[-1]), "t-scene"))   # a house of building B
    assert scene.building_of_case(rows, at_a) == plot.building_b
    sensor = next(s for s in city.sensors if s.grid_code == plot.grid_a)
    assert scene.building_at(rows, f"alarm:{sensor.sensor_id}/gas_over_threshold", None, None) == sensor.building_id
    assert scene.building_of_case(rows, "no-such-case") is None


def test_the_wall_counts_many_buildings_in_one_read(plot, rows):
    assert scene.help_counts(rows, [plot.building_a, plot.building_b, "t-scene-none"]) == {
        plot.building_a: 3, plot.building_b: 1, "t-scene-none": 0}
    cache = scene.CountCache(ttl_s=3600)
    assert cache.count(rows, plot.building_a) == 3 and cache.count(rows, None) == 0


def test_the_sealed_values_are_what_was_planted(stack, plot):
    """The planting itself seals as the ledger does (else the masks above would prove nothing)."""
    with closing(psycopg2.connect(stack.settings().pg_dsn)) as conn, conn.cursor() as cur:
        cur.execute("select phone_sealed from residents where resident_id = %s", (plot.people["alone"].resident_id,))
        sealed = cur.fetchone()[0]
    assert ledger_sealer(stack).open(privacy.PHONE, sealed) == plot.people["alone"].phone

"""The ledger's statistics (ledger.stats) against the real database, as the dashboard's own role
reads them: on a building, houses, residents, tags, parts, units and changes of our own planted in
a grid of the session city, each count equals (a) what we planted, as the difference from the
counts before planting, and (b) the same count made independently in SQL; restricted tags are not
even counted without their grant; a community's numbers leave out another community's rows; and
the children are the scope's (a community's grids; a grid counts as itself).

The planting (`plant_stats`) is shared with the statistics and map browser tests: in the first
community of the second-to-last street (away from test_ledger_reads' and test_demo_ledger's)."""
from __future__ import annotations

import json
import secrets
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import psycopg2
import pytest

from core.city import CITY_TZ
from core.ledger import (
    ChangeAction,
    Channel,
    HouseUse,
    Permission,
    RecordKind,
    Registration,
    Relation,
    Tag,
    ThingKind,
    ThingState,
)
from core.orgcodes import Scope
from ledger.stats import AGE_BAND_NAMES, UNKNOWN_AGE, StatsReads, child_length

from .screens import ensure_logins
from .test_ledger_reads import grant_as_admin

VIEWER = "t-ledger-stats"            # a leader of the planted community, no grant
GRANTED = "t-ledger-stats-granted"   # the same, granted RESTRICTED_TAGS there
# (registration, years old, tags) of each planted resident
PEOPLE = [(Registration.LOCAL, 3, ()), (Registration.LOCAL, 12, (Tag.LEFT_BEHIND_CHILD,)),
          (Registration.FLOATING, 25, ()), (Registration.FLOATING, 40, (Tag.COMMUNITY_CORRECTION,)),
          (Registration.LOCAL, 45, (Tag.VETERAN,)), (Registration.FOREIGN, 33, ()),
          (Registration.LOCAL, 70, (Tag.DISABLED, Tag.LOW_INCOME)), (Registration.LOCAL, 85, (Tag.ELDERLY_ALONE,)),
          (Registration.LOCAL, None, ()), (Registration.LOCAL, 6, ()), (Registration.LOCAL, 7, ()),
          (Registration.LOCAL, 79, ()), (Registration.LOCAL, 80, ())]
BANDS = ["0-6", "7-17", "18-34", "35-59", "35-59", "18-34", "60-79", "80+", UNKNOWN_AGE, "0-6", "7-17", "60-79", "80+"]
USES = [HouseUse.OWNER_OCCUPIED, HouseUse.OWNER_OCCUPIED, HouseUse.RENTED, HouseUse.VACANT, HouseUse.COMMERCIAL,
        HouseUse.RENTED]
PARTS = [(ThingKind.HYDRANT, ThingState.GOOD), (ThingKind.HYDRANT, ThingState.DAMAGED),
         (ThingKind.STREET_LAMP, ThingState.GOOD)]
UNIT_KIND = "t-stats-shop"           # a kind of unit nobody else has


@dataclass
class StatsPlanted:
    community: str
    grid: str
    other_community: str
    other_grid: str
    token: str
    buildings: list[str] = field(default_factory=list)
    houses: list[int] = field(default_factory=list)
    residents: list[int] = field(default_factory=list)
    things: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    changes: list[int] = field(default_factory=list)


def _place(city) -> tuple[str, str, str, str]:
    """The first community of the second-to-last street and its first residential grid; another
    community of that street and its grid."""
    street = city.streets[-2].code
    communities = [c.code for c in city.communities if c.code.startswith(street)][:2]
    grids = [next(g.code for g in city.grids if g.community_code == c) for c in communities]
    return communities[0], grids[0], communities[1], grids[1]


def _born(years: int | None) -> date | None:
    """A birth date `years` years old today and as far from a birthday as can be: the edges of
    the bands are tested on ages, not on a birthday falling today."""
    if years is None:
        return None
    today = datetime.now(CITY_TZ).date()
    return today - timedelta(days=round(365.25 * years) + 180)


def _building(cur, planted: StatsPlanted, building_id: str, grid: str, lon: float, lat: float, floors: int) -> None:
    """A building with a small square footprint around its point."""
    d = 0.00015
    cur.execute("insert into buildings (building_id, grid_code, name, lon, lat, floors, households, entrances, "
                "footprint) values (%s, %s, %s, %s, %s, %s, 6, 1, ST_MakeEnvelope(%s, %s, %s, %s, 4326))",
                (building_id, grid, f"统计苑 {building_id[-6:]}", lon, lat, floors, lon - d, lat - d, lon + d, lat + d))
    planted.buildings.append(building_id)


def _resident(cur, planted: StatsPlanted, household: int, grid: str, n: int, registration, years, tags) -> int:
    cur.execute("insert into residents (household_id, grid_code, relation, name, gender, birth_date, registration) "
                "values (%s, %s, %s, %s, %s, %s, %s) returning resident_id",
                (household, grid, (Relation.HEAD if n == 0 else Relation.OTHER).value, f"统计{n}号",
                 "female" if n % 2 else "male", _born(years), registration.value))
    resident = cur.fetchone()[0]
    planted.residents.append(resident)
    for tag in tags:
        cur.execute("insert into resident_tags (resident_id, tag) values (%s, %s)", (resident, tag.value))
    return resident


def _change(cur, planted: StatsPlanted, kind: RecordKind, record_id: str, action: ChangeAction, channel: Channel,
            after: dict | None, at: datetime) -> None:
    cur.execute("insert into ledger_changes (record_kind, record_id, version, action, changed_at, changed_by, channel,"
                " after) values (%s, %s, 1, %s, %s, 'tests', %s, %s) returning change_id",
                (kind.value, record_id, action.value, at, channel.value, json.dumps(after) if after else None))
    planted.changes.append(cur.fetchone()[0])


def plant_stats(dsn: str, city) -> StatsPlanted:
    """One building of six houses (USES) in the community's grid with one household of PEOPLE,
    one resident who moved out (not counted), PARTS, two units of UNIT_KIND (one a fire-safety key
    unit), changes this month and two months ago; one building with a resident in the other
    community."""
    planted = StatsPlanted(*_place(city), secrets.token_hex(3))
    grid = city.grid_by_code[planted.grid].boundary.representative_point()
    other = city.grid_by_code[planted.other_grid].boundary.representative_point()
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        main, far = f"t-stats-a-{planted.token}", f"t-stats-b-{planted.token}"
        _building(cur, planted, main, planted.grid, grid.x, grid.y, 6)
        _building(cur, planted, far, planted.other_grid, other.x, other.y, 3)
        for n, use in enumerate(USES):
            cur.execute("insert into houses (building_id, grid_code, entrance, floor, number, use) values "
                        "(%s, %s, 1, %s, %s, %s) returning house_id",
                        (main, planted.grid, n + 1, f"{n + 1}01", use.value))
            planted.houses.append(cur.fetchone()[0])
        cur.execute("insert into households (house_id) values (%s) returning household_id", (planted.houses[0],))
        household = cur.fetchone()[0]
        for n, (registration, years, tags) in enumerate(PEOPLE):
            _resident(cur, planted, household, planted.grid, n, registration, years, tags)
        gone = _resident(cur, planted, household, planted.grid, 99, Registration.LOCAL, 50, (Tag.VETERAN,))
        cur.execute("update residents set moved_out = current_date - 1 where resident_id = %s", (gone,))
        cur.execute("insert into houses (building_id, grid_code, entrance, floor, number, use) values "
                    "(%s, %s, 1, 1, '101', %s) returning house_id", (far, planted.other_grid, HouseUse.RENTED.value))
        planted.houses.append(cur.fetchone()[0])
        cur.execute("insert into households (house_id) values (%s) returning household_id", (planted.houses[-1],))
        _resident(cur, planted, cur.fetchone()[0], planted.other_grid, 0, Registration.LOCAL, 30, (Tag.VETERAN,))
        for n, (kind, state) in enumerate(PARTS):
            thing = f"t-stats-{planted.token}-{n}"
            cur.execute("insert into things (thing_id, kind, grid_code, building_id, position, owner, state) values "
                        "(%s, %s, %s, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326), 'tests', %s)",
                        (thing, kind.value, planted.grid, None, grid.x + 0.0003 * n, grid.y + 0.0003, state.value))
            planted.things.append(thing)
        for n in range(2):
            unit = f"t-stats-{planted.token}-u{n}"
            cur.execute("insert into units (unit_id, grid_code, name, kind, lon, lat, building_id, fire_key_unit) "
                        "values (%s, %s, %s, %s, %s, %s, %s, %s)",
                        (unit, planted.grid, f"统计店{n}", UNIT_KIND, grid.x, grid.y, main, n == 0))
            planted.units.append(unit)
        now = datetime.now(CITY_TZ)
        _change(cur, planted, RecordKind.BUILDING, main, ChangeAction.CREATE, Channel.IMPORT, None, now)
        _change(cur, planted, RecordKind.RESIDENT, str(planted.residents[0]), ChangeAction.UPDATE, Channel.HANDHELD,
                {"grid_code": planted.grid}, now)
        _change(cur, planted, RecordKind.RESIDENT, f"t-{planted.token}-1", ChangeAction.DELETE, Channel.JOB,
                {"grid_code": planted.grid}, now - timedelta(days=62))
        _change(cur, planted, RecordKind.RESIDENT, f"t-{planted.token}-2", ChangeAction.UPDATE, Channel.SCREEN,
                {"grid_code": planted.other_grid}, now)
    return planted


def remove_stats(dsn: str, planted: StatsPlanted, users: tuple[str, ...] = ()) -> None:
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute("delete from ledger_changes where change_id = any(%s)", (planted.changes,))
        cur.execute("delete from units where unit_id = any(%s)", (planted.units,))
        cur.execute("delete from things where thing_id = any(%s)", (planted.things,))
        cur.execute("update households set head_id = null where house_id = any(%s)", (planted.houses,))
        cur.execute("delete from residents where resident_id = any(%s)", (planted.residents,))
        cur.execute("delete from households where house_id = any(%s)", (planted.houses,))
        cur.execute("delete from houses where house_id = any(%s)", (planted.houses,))
        cur.execute("delete from buildings where building_id = any(%s)", (planted.buildings,))
        cur.execute("delete from ledger_grants where username = any(%s)", (list(users),))


@pytest.fixture(scope="module")
def reads(stack, city):
    found = StatsReads(city, stack.app_settings("dashboard").pg_dsn)
    yield found
    found.db.closeall()


@pytest.fixture(scope="module")
def counted(stack, city, reads):
    """(the community's numbers before planting, the planting, after it for VIEWER and GRANTED)."""
    dsn = stack.settings().pg_dsn
    community = _place(city)[0]
    ensure_logins(dsn, {VIEWER: ("leader", community), GRANTED: ("leader", community)})
    grant_as_admin(dsn, GRANTED, Permission.RESTRICTED_TAGS, community)
    scope = Scope(community, community)
    before = reads.stats(scope, GRANTED)
    planted = plant_stats(dsn, city)
    yield before, planted, reads.stats(scope, VIEWER), reads.stats(scope, GRANTED)
    remove_stats(dsn, planted, (VIEWER, GRANTED))


def _added(after: dict, before: dict) -> dict:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after.keys() | before.keys()
            if after.get(k, 0) != before.get(k, 0)}


def _expected(pairs) -> dict:
    found: dict = {}
    for key in pairs:
        found[key] = found.get(key, 0) + 1
    return found


def test_the_planted_residents_are_counted_by_registration_and_age_band(counted):
    before, planted, _, after = counted
    grid_after, grid_before = after.registration[planted.grid], before.registration.get(planted.grid, {})
    assert _added(grid_after, grid_before) == _expected(r.value for r, _, _ in PEOPLE)
    assert _added(after.ages[planted.grid], before.ages.get(planted.grid, {})) == _expected(BANDS)
    assert set(BANDS) >= set(AGE_BAND_NAMES)         # every band planted, at its edges too


def test_tags_houses_parts_units_and_changes_count_what_was_planted(counted):
    before, planted, _, after = counted
    tags = [t.value for _, _, ts in PEOPLE for t in ts]
    assert _added(after.tags[planted.grid], before.tags.get(planted.grid, {})) == _expected(tags)
    assert _added(after.houses[planted.grid], before.houses.get(planted.grid, {})) == _expected(u.value for u in USES)
    assert _added(after.parts, before.parts) == _expected((k.value, s.value) for k, s in PARTS)
    assert _added(after.unit_kinds, before.unit_kinds) == {UNIT_KIND: 2}
    assert _added(after.fire_key_units, before.fire_key_units) == {planted.grid: 1}
    month = datetime.now(CITY_TZ).strftime("%Y-%m")
    then = (datetime.now(CITY_TZ) - timedelta(days=62)).strftime("%Y-%m")
    changes = _added({c[:3]: c[3] for c in after.changes}, {c[:3]: c[3] for c in before.changes})
    assert changes == {(month, ChangeAction.CREATE.value, Channel.IMPORT.value): 1,
                       (month, ChangeAction.UPDATE.value, Channel.HANDHELD.value): 1,
                       (then, ChangeAction.DELETE.value, Channel.JOB.value): 1}   # not the other community's


def test_the_counts_equal_sql_counted_independently(stack, counted):
    _, planted, _, after = counted
    with closing(psycopg2.connect(stack.settings().pg_dsn)) as conn, conn.cursor() as cur:
        cur.execute("select g.code, r.registration, count(*) from residents r join grids g on g.code = r.grid_code "
                    "where g.community_code = %s and (r.moved_out is null or r.moved_out > current_date) "
                    "group by 1, 2", (planted.community,))
        residents = {(g.strip(), reg): n for g, reg, n in cur.fetchall()}
        cur.execute("select h.grid_code, h.use, count(*) from houses h join grids g on g.code = h.grid_code "
                    "where g.community_code = %s group by 1, 2", (planted.community,))
        houses = {(g.strip(), use): n for g, use, n in cur.fetchall()}
    assert {(g, reg): n for g, per in after.registration.items() for reg, n in per.items()} == residents
    assert {(g, use): n for g, per in after.houses.items() for use, n in per.items()} == houses
    assert sum(after.total(after.ages).values()) == sum(residents.values())


def test_restricted_tags_are_not_even_counted_without_the_grant(counted):
    _, planted, viewer, granted = counted
    assert granted.restricted_counted and not viewer.restricted_counted
    assert granted.tags[planted.grid].get(Tag.COMMUNITY_CORRECTION.value, 0) >= 1
    assert all(tag not in per for per in viewer.tags.values() for tag in
               (Tag.COMMUNITY_CORRECTION, Tag.DRUG_REHABILITATION, Tag.PETITION_KEY_PERSON))
    assert viewer.tags[planted.grid][Tag.VETERAN.value] == granted.tags[planted.grid][Tag.VETERAN.value]


def test_a_communitys_numbers_leave_out_another_communitys_rows(counted, reads):
    _, planted, viewer, _ = counted
    assert planted.other_grid not in viewer.registration and planted.other_grid not in viewer.houses
    assert all(code.startswith(planted.community) for code, _ in viewer.children)
    other = reads.stats(Scope(planted.other_community, planted.other_community), VIEWER)
    assert other.registration[planted.other_grid][Registration.LOCAL.value] >= 1
    assert planted.grid not in other.registration


def test_the_children_are_the_scopes_and_a_grid_counts_as_itself(counted, reads, city):
    _, planted, viewer, _ = counted
    assert viewer.drills and len(viewer.children[0][0]) == child_length(planted.community) == 15
    assert {c for c, _ in viewer.children} == {g.code for g in city.grids if g.community_code == planted.community}
    alone = reads.stats(Scope(planted.grid, planted.grid), GRANTED)
    assert not alone.drills and [c for c, _ in alone.children] == [planted.grid]
    assert alone.registration[planted.grid] == viewer.registration[planted.grid]
    street = reads.stats(Scope(planted.community[:9], planted.community[:9]), GRANTED)
    assert planted.community in street.registration and not street.restricted_counted   # granted the community only


def test_a_streets_counts_are_kept_a_while_and_a_communitys_are_counted_each_time(stack, city, counted):
    from ledger.stats import WIDE_KEEP_S
    _, planted, _, _ = counted
    now = [1000.0]
    reads = StatsReads(city, stack.app_settings("dashboard").pg_dsn, clock=lambda: now[0])
    street, community = Scope(planted.community[:9], ""), Scope(planted.community, "")
    dsn = stack.settings().pg_dsn
    try:
        first, near = reads.stats(street, VIEWER), reads.stats(community, VIEWER)
        with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
            cur.execute("insert into households (house_id) values (%s) returning household_id", (planted.houses[1],))
            _resident(cur, planted, cur.fetchone()[0], planted.grid, 50, Registration.FOREIGN, 30, ())
        foreign = Registration.FOREIGN.value
        assert reads.stats(street, VIEWER) is first                                   # kept
        assert reads.stats(community, VIEWER).registration[planted.grid][foreign] == \
            near.registration[planted.grid][foreign] + 1                                # counted again
        now[0] += WIDE_KEEP_S + 1
        again = reads.stats(street, VIEWER)
        assert again.registration[planted.community][foreign] == first.registration[planted.community][foreign] + 1
    finally:
        reads.db.closeall()


# --- the 3D view's geometry (ledger.geometry: pure, no database) ---------------------------------------

def test_an_l_shaped_footprint_is_roofed_inside_itself_and_walled_all_round():
    from shapely.geometry import Polygon

    from ledger.geometry import extrude, triangles
    ring = [(0.0, 0.0), (10.0, 0.0), (10.0, 4.0), (4.0, 4.0), (4.0, 10.0), (0.0, 10.0)]
    roof = triangles(ring)
    assert len(roof) == len(ring) - 2
    assert sum(Polygon([ring[a], ring[b], ring[c]]).area for a, b, c in roof) == pytest.approx(Polygon(ring).area)
    assert all(Polygon(ring).buffer(1e-9).contains(Polygon([ring[a], ring[b], ring[c]]).centroid)
               for a, b, c in roof)
    mesh = extrude(ring, 18.0)
    assert len(mesh.x) == 2 * len(ring) and set(mesh.z) == {0.0, 18.0}
    assert len(mesh.i) == 2 * len(ring) + len(roof)               # two triangles a wall, the roof's


def test_a_point_a_kilometre_away_is_a_kilometre_in_metres():
    from ledger.geometry import to_metres
    east, north = to_metres((119.3, 26.08), (119.3, 26.08 + 1 / 111.195))
    assert abs(east) < 1e-6 and north == pytest.approx(1000, rel=1e-3)
    east, _ = to_metres((119.3, 26.08), (119.31, 26.08))
    assert east == pytest.approx(999.0, rel=2e-3)                  # 0.01° of longitude at 26° N

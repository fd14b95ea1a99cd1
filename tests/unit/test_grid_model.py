"""The grid hierarchy: codes, tiling, point lookup, and the deterministic demo city."""
from __future__ import annotations

import hashlib
import random
from collections import Counter

import pytest
import shapely
from shapely.geometry import Point

from core import orgcodes
from core.city import City, GridKind
from core.gridindex import GridIndex
from core.roles import Role
from simulator.citygen import SCALES, generate

AREA_TOLERANCE = 1e-12  # square degrees, ~0.01 m²


@pytest.fixture(scope="module")
def city() -> City:
    return generate(SCALES["demo"], seed=7)


@pytest.fixture(scope="module")
def index(city) -> GridIndex:
    return GridIndex(city.grids)


# --- codes ---------------------------------------------------------------------------------------
def test_a_grid_code_has_fifteen_digits_and_knows_every_level_above_it():
    assert orgcodes.level_of("350102001002003") is orgcodes.Level.GRID
    assert orgcodes.parent_of("350102001002003") == "350102001002"
    assert orgcodes.ancestors("350102001002003") == ["350102", "350102001", "350102001002", "350102001002003"]
    assert orgcodes.parent_of("350102") is None
    assert orgcodes.child_code("350102001", 7) == "350102001007"


@pytest.mark.parametrize("bad", ["35010200100200", "3501020010020031", "35010200100200x", "350100001001001",
                                 "990102001001001", "350102000001001", "350102001001000", "", "３５０１０２"])
def test_malformed_codes_are_refused_with_a_reason(bad):
    with pytest.raises(orgcodes.InvalidCode):
        orgcodes.level_of(bad)


def test_every_code_in_the_city_is_valid_unique_and_under_its_parent(city):
    orgs = [*city.districts, *city.streets, *city.communities]
    codes = [o.code for o in orgs] + [g.code for g in city.grids]
    assert len(codes) == len(set(codes))
    known = set(codes)
    for code in codes:
        level = orgcodes.level_of(code)
        if level is not orgcodes.Level.DISTRICT:
            assert orgcodes.parent_of(code) in known
    assert Counter(orgcodes.level_of(c).value for c in codes) == {
        "district": 1, "street": 4, "community": 20, "grid": 150}


def test_grids_are_numbered_north_to_south_then_west_to_east(city):
    grids = [g for g in city.grids if g.community_code == city.communities[0].code]
    first, last = grids[0].boundary.centroid, grids[-1].boundary.centroid
    assert first.y > last.y


# --- tiling --------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", ["street", "community"])
def test_children_tile_their_parent_with_no_gap_and_no_overlap(city, level):
    parents = city.streets if level == "street" else city.communities
    children_of = ({c.code: [x.boundary for x in city.communities if x.code.startswith(c.code)] for c in parents}
                   if level == "street" else
                   {c.code: [g.boundary for g in city.grids if g.code.startswith(c.code)] for c in parents})
    for parent in parents:
        children = children_of[parent.code]
        union = shapely.union_all(children)
        assert union.symmetric_difference(parent.boundary).area < AREA_TOLERANCE, parent.code
        assert abs(sum(c.area for c in children) - parent.boundary.area) < AREA_TOLERANCE, parent.code


def test_grids_of_the_whole_district_do_not_overlap(city):
    tree = shapely.STRtree([g.boundary for g in city.grids])
    left, right = tree.query([g.boundary for g in city.grids], predicate="intersects")
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        if i < j:
            assert city.grids[i].boundary.intersection(city.grids[j].boundary).area < AREA_TOLERANCE


def test_households_and_kinds_are_plausible(city):
    for grid in city.grids:
        if grid.kind is GridKind.RESIDENTIAL:
            assert 250 <= grid.households <= 500
        assert grid.population >= grid.households * 2 or grid.households == 0
    assert sum(g.kind is GridKind.UNIT for g in city.grids) >= 1


def test_each_grid_has_four_members_one_per_role_with_unique_terminals(city):
    by_grid = Counter(m.grid_code for m in city.members)
    assert set(by_grid.values()) == {4} and len(by_grid) == len(city.grids)
    for grid in city.grids[:10]:
        roles = {m.role for m in city.members if m.grid_code == grid.code}
        assert roles == set(Role)
    assert len({m.terminal_id for m in city.members}) == len(city.members)


def test_devices_sit_in_buildings_inside_their_grid_behind_a_gateway(city, index):
    assert len(city.sensors) > 2000
    for sensor in city.sensors[::37]:
        building = city.building_by_id[sensor.building_id]
        assert index.locate(building.lon, building.lat) == sensor.grid_code == building.grid_code
        assert city.gateway_by_id[sensor.gateway_id].building_id == building.building_id


# --- point lookup -------------------------------------------------------------------------------
def test_a_point_inside_a_grid_finds_that_grid(city, index):
    for grid in city.grids:
        p = grid.boundary.representative_point()
        assert index.locate(p.x, p.y) == grid.code


def test_a_shared_vertex_belongs_to_the_grid_with_the_smallest_code(city, index):
    """A vertex shared by several grids lies exactly on all their borders."""
    owners: dict[tuple[float, float], set[str]] = {}
    for grid in city.grids:
        for xy in grid.boundary.exterior.coords:
            owners.setdefault(xy, set()).add(grid.code)
    shared = {xy: codes for xy, codes in owners.items() if len(codes) > 1}
    assert len(shared) > 100
    for (x, y), codes in shared.items():
        # a vertex of two grids may also lie on the straight edge of a third (a T-junction)
        touching = codes | {g.code for g in city.grids if g.boundary.intersects(Point(x, y))}
        assert index.locate(x, y) == min(touching)


def test_a_point_on_a_shared_edge_finds_one_of_its_two_grids(city, index):
    """Or, within floating-point slivers (1e-9 degrees) where three grids meet, a third one."""
    checked = exact = 0
    for a in city.grids[:60]:
        for b in city.grids:
            if b.code <= a.code:
                continue
            edge = shapely.line_merge(a.boundary.intersection(b.boundary))
            if edge.geom_type != "LineString" or edge.length == 0:
                continue
            for fraction in (0.25, 0.5, 0.75):
                p = edge.interpolate(fraction, normalized=True)
                found = index.locate(p.x, p.y)
                assert found is not None
                assert city.grid_by_code[found].boundary.distance(p) < 1e-9
                exact += found in (a.code, b.code)
                checked += 1
    assert checked > 150
    assert exact / checked > 0.98


def test_grid_vertices_and_random_points_in_the_district_always_find_a_grid(city, index):
    district = city.districts[0].boundary
    vertices = [Point(xy) for g in city.grids for xy in g.boundary.exterior.coords]
    inside = [v for v in vertices if district.buffer(-1e-7).contains(v)]
    assert all(index.locate(v.x, v.y) is not None for v in inside)
    rng = random.Random(3)
    minx, miny, maxx, maxy = district.bounds
    pts = [Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy)) for _ in range(3000)]
    for p, code in zip(pts, index.locate_many([p.x for p in pts], [p.y for p in pts]), strict=True):
        assert (code is not None) == district.contains(p)
        if code is not None:
            assert city.grid_by_code[code].boundary.buffer(1e-9).contains(p)


def test_points_outside_the_city_find_no_grid(index):
    assert index.locate(0.0, 0.0) is None
    assert index.locate(119.40, 26.10) is None       # east of Gulou
    assert index.locate(119.29, 26.20) is None       # north of Gulou
    assert index.locate_many([0.0, 119.40], [0.0, 26.10]) == [None, None]


def test_locate_many_agrees_with_locate(city, index):
    rng = random.Random(5)
    minx, miny, maxx, maxy = city.districts[0].boundary.bounds
    lons = [rng.uniform(minx - 0.01, maxx + 0.01) for _ in range(2000)]
    lats = [rng.uniform(miny - 0.01, maxy + 0.01) for _ in range(2000)]
    assert index.locate_many(lons, lats) == [index.locate(x, y) for x, y in zip(lons, lats, strict=True)]


# --- generator -----------------------------------------------------------------------------------
def test_the_generator_is_deterministic_for_a_seed():
    a = generate(SCALES["demo"], seed=11).to_json()
    b = generate(SCALES["demo"], seed=11).to_json()
    c = generate(SCALES["demo"], seed=12).to_json()
    assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()
    assert a != c


def test_the_city_file_round_trips(city, tmp_path):
    path = tmp_path / "city.json"
    city.save(path)
    again = City.load(path)
    assert again.to_json() == city.to_json()
    assert again.grids[3].boundary.equals(city.grids[3].boundary)


def test_the_demo_city_lies_on_gulou_district_fuzhou(city):
    centroid = city.districts[0].boundary.centroid
    assert 119.25 < centroid.x < 119.33 and 26.06 < centroid.y < 26.14
    assert city.districts[0].code == "350102"

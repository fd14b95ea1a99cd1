"""The boundary import's checks on their own (registry.boundaries): which units a file holds, and
what keeps them from tiling their parent, each problem naming the units."""
from __future__ import annotations

import pytest
from shapely.geometry import Polygon, box, mapping

from core.orgcodes import Level
from registry.boundaries import tiling_problems, units_of
from registry.store import RegistryError

COMMUNITY = "350102001001"
PARENT = box(119.0, 26.0, 119.002, 26.001)      # about 200 m × 111 m


def _file(*features) -> dict:
    return {"type": "FeatureCollection",
            "features": [{"type": "Feature", "geometry": mapping(geom), "properties": {"code": code, "name": code}}
                         for code, geom in features]}


def _halves(west=None, east=None):
    return [(f"{COMMUNITY}001", west or box(119.0, 26.0, 119.001, 26.001)),
            (f"{COMMUNITY}002", east or box(119.001, 26.0, 119.002, 26.001))]


def test_two_grids_that_tile_their_community_have_no_problem():
    level, units = units_of(_file(*_halves()))
    assert level is Level.GRID and [u["code"] for u in units] == [f"{COMMUNITY}001", f"{COMMUNITY}002"]
    assert tiling_problems(units, PARENT, 26.0) == []


def test_an_overlap_names_both_grids_and_its_area():
    _, units = units_of(_file(*_halves(west=box(119.0, 26.0, 119.0011, 26.001))))
    [problem] = tiling_problems(units, PARENT, 26.0)
    assert problem.startswith(f"grids {COMMUNITY}001 and {COMMUNITY}002 overlap by ")
    assert 1_000 < float(problem.split("by ")[1].split(" ")[0].replace(",", "")) < 1_300   # 10 m × 111 m


def test_a_gap_names_the_grid_beside_it_and_a_grid_outside_is_named():
    _, units = units_of(_file(*_halves(west=box(119.0, 26.0, 119.0009, 26.001),
                                       east=box(119.001, 26.0, 119.0025, 26.001))))
    problems = tiling_problems(units, PARENT, 26.0)
    assert any(p.startswith(f"grid {COMMUNITY}002 reaches ") and "outside its community" in p for p in problems)
    assert any(p.startswith("a gap of ") and "inside the community, near grid" in p for p in problems)


def test_a_streets_communities_are_a_level_of_their_own():
    level, units = units_of(_file(("350102001001", box(0, 0, 1, 1)), ("350102001002", box(1, 0, 2, 1))))
    assert level is Level.COMMUNITY and all(u["level"] is Level.COMMUNITY for u in units)
    problems = tiling_problems(units, box(0, 0, 2, 1.5), 0.0, Level.COMMUNITY)
    assert len(problems) == 1 and "inside the street, near community" in problems[0]


@pytest.mark.parametrize(("features", "says"), [
    ([("35010200100100", box(0, 0, 1, 1))], "15-digit grid code"),
    ([(f"{COMMUNITY}001", box(0, 0, 1, 1)), ("350102001002", box(1, 0, 2, 1))], "mixes communities and grids"),
    ([(f"{COMMUNITY}001", box(0, 0, 1, 1)), ("350102001002001", box(1, 0, 2, 1))], "belong to 2 parents"),
    ([(f"{COMMUNITY}001", box(0, 0, 1, 1)), (f"{COMMUNITY}001", box(1, 0, 2, 1))], "appears twice"),
    ([(f"{COMMUNITY}000", box(0, 0, 1, 1))], "number 000 at digits 13-15"),
    ([("990102001001001", box(0, 0, 1, 1))], "unknown province prefix 99"),
    ([(f"{COMMUNITY}001", Polygon())], "geometry is empty"),
])
def test_a_file_that_is_not_one_level_of_one_parent_is_refused_saying_why(features, says):
    with pytest.raises(RegistryError, match=says):
        units_of(_file(*features))


def test_a_self_crossing_polygon_is_refused_naming_its_feature():
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    document = {"type": "FeatureCollection",
                "features": [{"type": "Feature", "geometry": bowtie, "properties": {"code": f"{COMMUNITY}001"}}]}
    with pytest.raises(RegistryError, match=f"feature 0 \\(grid {COMMUNITY}001\\): geometry is not valid"):
        units_of(document)


@pytest.mark.parametrize(("document", "says"), [
    ([], "expected a GeoJSON FeatureCollection"),
    ({"type": "FeatureCollection", "features": ["x"]}, "properties.code must be"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": mapping(box(0, 0, 1, 1)),
                                                 "properties": {"code": f"{COMMUNITY}001", "households": "many"}}]},
     "households 'many': a whole number"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": mapping(box(0, 0, 1, 1)),
                                                 "properties": {"code": f"{COMMUNITY}001", "population": -3}}]},
     "population -3: a whole number"),
])
def test_what_is_no_feature_collection_of_units_is_refused_not_a_crash(document, says):
    with pytest.raises(RegistryError, match=says):
        units_of(document)


def test_optional_grid_facts_left_out_keep_what_is_stored():
    _, [unit] = units_of(_file((f"{COMMUNITY}001", box(0, 0, 1, 1))))
    assert (unit["kind"], unit["households"], unit["population"]) == (None, None, None)

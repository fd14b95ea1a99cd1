"""The city's reference data survives a round trip through PostgreSQL."""
from __future__ import annotations

import pytest

from database.citydb import load_city, read_city
from simulator.citygen import SCALES, generate


@pytest.fixture(scope="module")
def city():
    return generate(SCALES["demo"], seed=7)


def test_loading_a_city_then_reading_it_back_gives_the_same_city(db, city):
    load_city(db, city)
    again = read_city(db)
    assert again.name == city.name
    for attr in ("buildings", "units", "organizations", "gateways", "sensors", "members"):
        assert set(getattr(again, attr)) == set(getattr(city, attr)), attr
    assert [g.code for g in again.grids] == [g.code for g in city.grids]
    for a, b in zip(again.grids, city.grids, strict=True):
        assert a.boundary.equals_exact(b.boundary, 0) and a.households == b.households
    assert {o.code for o in again.communities} == {o.code for o in city.communities}


def test_loading_again_replaces_the_reference_data(db, city):
    load_city(db, city)
    load_city(db, city)
    with db.cursor() as cur:
        cur.execute("select count(*) from members")
        assert cur.fetchone()[0] == len(city.members)
        cur.execute("select count(*) from grids where community_code = %s", (city.communities[0].code,))
        assert cur.fetchone()[0] == sum(g.community_code == city.communities[0].code for g in city.grids)

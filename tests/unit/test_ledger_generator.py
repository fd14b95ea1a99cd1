"""The demo ledger's generator (simulator.ledger): valid and consistent ID numbers, plausible
households, houses as the city counts households, footprints in their grids, determinism."""
from __future__ import annotations

import functools
import random
import re
from datetime import date

from core.city import City
from core.ledger import RESTRICTED_TAGS, Gender, HouseUse, Registration, Relation, Tag, ThingKind, ThingState
from ledger.privacy import check_id_number
from simulator import ledgerplaces
from simulator.citygen import SCALES
from simulator.citygen import generate as generate_city
from simulator.ledger import generate, stats
from simulator.ledgerpeople import ADULT_AGE, Identities, id_check_char

TODAY = date(2026, 12, 7)
PHONE = re.compile(r"1[3-9]\d{9}")
DOCUMENT = re.compile(r"[A-Z]{2}\d{7}")


@functools.cache
def demo_city() -> City:
    return generate_city(SCALES["demo"], seed=7)


def small_city(grids: int = 8) -> City:
    """The first grids of the demo city, with their buildings, units and organisations."""
    city = demo_city()
    codes = {g.code for g in city.grids[:grids]}
    return City(city.name, city.seed, districts=city.districts, streets=city.streets, communities=city.communities,
                grids=city.grids[:grids], buildings=[b for b in city.buildings if b.grid_code in codes],
                units=[u for u in city.units if u.grid_code in codes],
                organizations=[o for o in city.organizations if o.grid_code in codes])


@functools.cache
def small_ledger():
    return list(generate(small_city(), TODAY))


def residents(ledger):
    for grid in ledger:
        for building in grid.buildings:
            for _, household in building.households:
                yield grid.grid, household, household.residents


def age(person) -> float:
    return (TODAY - person.birth_date).days / 365.25


def test_id_numbers_are_valid_gb11643_and_agree_with_birth_date_gender_and_region():
    seen = 0
    for grid, _, people in residents(small_ledger()):
        for person in people:
            if person.registration is Registration.FOREIGN:
                assert DOCUMENT.fullmatch(person.id_number), person.id_number
                continue
            assert check_id_number(person.id_number, person.birth_date) is None, person.id_number
            assert int(person.id_number[16]) % 2 == (1 if person.gender is Gender.MALE else 0)
            if person.registration is Registration.LOCAL:
                assert person.id_number[:6] == grid.code[:6]
            seen += 1
    assert seen > 5000


def test_no_two_residents_share_an_id_number_or_a_phone():
    ids = [p.id_number for _, _, people in residents(small_ledger()) for p in people]
    phones = [p.phone for _, _, people in residents(small_ledger()) for p in people if p.phone]
    assert len(set(ids)) == len(ids) and len(set(phones)) == len(phones)


def test_identities_stay_unique_and_valid_for_many_people_born_the_same_day():
    identities = Identities(12345)
    numbers = [identities.id_number("350102", date(1990, 3, 7), Gender.FEMALE if i % 2 else Gender.MALE)
               for i in range(400)]
    assert len(set(numbers)) == 400
    assert all(check_id_number(n, date(1990, 3, 7)) is None for n in numbers)
    assert id_check_char("11010519491231002") == "X"          # GB 11643's own example


def test_adults_have_mobile_phones_and_children_none():
    adults = with_phone = 0
    for _, _, people in residents(small_ledger()):
        for person in people:
            if age(person) < ADULT_AGE:
                assert person.phone is None
            else:
                adults += 1
                if person.phone:
                    with_phone += 1
                    assert PHONE.fullmatch(person.phone), person.phone
    assert with_phone / adults > 0.9


def test_every_household_has_one_head_first_and_plausible_ages():
    for _, household, people in residents(small_ledger()):
        assert [p.relation for p in people].count(Relation.HEAD) == 1 and people[0].relation is Relation.HEAD
        head = people[0]
        assert age(head) >= 18
        for person in people[1:]:
            gap = age(head) - age(person)
            if person.relation is Relation.CHILD:
                assert gap >= 18, (household.structure, gap)
            elif person.relation is Relation.GRANDCHILD:
                assert gap >= 36, (household.structure, gap)
            elif person.relation is Relation.PARENT:
                assert gap <= -18, (household.structure, gap)
            elif person.relation is Relation.SPOUSE:
                assert abs(gap) <= 15 and age(person) >= 18
                assert person.gender is not head.gender
        assert all(p.moved_in >= p.birth_date for p in people)
        assert head.moved_out is None


def test_children_share_the_head_s_surname():
    for _, _, people in residents(small_ledger()):
        if people[0].registration is Registration.FOREIGN:
            continue
        surname = people[0].name[0]
        for person in people:
            if person.relation in (Relation.CHILD, Relation.GRANDCHILD):
                assert person.name.startswith(surname), (people[0].name, person.name)


def test_care_tags_are_derived_from_the_household():
    alone = 0
    for _, _, people in residents(small_ledger()):
        has_adult_child = any(p.relation is Relation.CHILD and age(p) >= 18 for p in people)
        for person in people:
            lives_alone = len(people) == 1 and age(person) >= 65
            assert (Tag.ELDERLY_ALONE in person.tags) == (lives_alone and person.moved_out is None)
            alone += lives_alone
            if Tag.LEFT_BEHIND_CHILD in person.tags:
                assert person.relation is Relation.GRANDCHILD and age(person) < 16 and not has_adult_child
            assert all(since >= person.birth_date for since in person.tags.values())
    assert alone > 50


def test_houses_per_building_equal_its_households_and_are_numbered_by_floor():
    for grid in small_ledger():
        for building in grid.buildings:
            assert len(building.houses) == building.building.households
            assert 1 <= building.entrances <= 4
            numbers = {(h.entrance, h.number) for h in building.houses}
            assert len(numbers) == len(building.houses)
            for house in building.houses:
                assert house.number.startswith(str(house.floor)) and len(house.number) == len(str(house.floor)) + 2
                assert 1 <= house.floor <= building.building.floors and 40 <= house.area_m2 <= 140
                assert house.use is not HouseUse.COMMERCIAL or house.floor == 1
            occupied = [i for i, _ in building.households]
            assert all(building.houses[i].use in (HouseUse.OWNER_OCCUPIED, HouseUse.RENTED) for i in occupied)


def test_footprints_lie_in_their_grid_and_rarely_overlap():
    overlaps = total = 0
    for grid in small_ledger():
        outlines = [b.footprint for b in grid.buildings]
        for i, outline in enumerate(outlines):
            total += 1
            assert outline.geom_type == "Polygon" and outline.is_valid
            assert grid.grid.boundary.contains(outline.centroid)
            overlaps += any(outline.intersects(o) for o in outlines[:i])
    assert overlaps <= total * 0.05


def test_parts_have_grid_codes_and_are_mostly_good_and_shops_have_valid_licences():
    things = [t for grid in small_ledger() for t in grid.things]
    assert {t.kind for t in things} >= {ThingKind.HYDRANT, ThingKind.STREET_LAMP, ThingKind.FIRE_EXTINGUISHER}
    assert len({t.thing_id for t in things}) == len(things)
    assert all(re.fullmatch(r"[A-Z]{2,3}-\d{15}-\d+", t.thing_id) and t.thing_id.split("-")[1] == t.grid_code
               for t in things)
    assert 0.93 < sum(t.state is ThingState.GOOD for t in things) / len(things) < 1.0
    units = [u for grid in small_ledger() for u in grid.units]
    assert units and all(ledgerplaces.uscc_valid(u.licence) and PHONE.fullmatch(u.phone) for u in units)


def test_the_same_city_and_day_give_the_same_ledger():
    def fingerprint(ledger):
        return [(p.name, p.id_number, p.phone, p.birth_date, sorted(p.tags)) for _, _, people in residents(ledger)
                for p in people]

    assert fingerprint(list(generate(small_city(), TODAY))) == fingerprint(small_ledger())
    assert fingerprint(list(generate(small_city(), date(2025, 1, 1))))[:50] != fingerprint(small_ledger())[:50]


def test_a_residents_target_is_reached():
    city = small_city()
    wanted = round(sum(b.households for b in city.buildings) * 2.95)   # the big city's 2 M
    got = sum(len(people) for _, _, people in residents(generate(city, TODAY, residents=wanted)))
    assert abs(got - wanted) / wanted < 0.06


def test_a_licence_with_a_wrong_check_character_is_told_apart():
    good = ledgerplaces.uscc("350102", random.Random(1))
    assert ledgerplaces.uscc_valid(good) and good.startswith("9") and good[2:8] == "350102"
    assert not ledgerplaces.uscc_valid(good[:17] + ("0" if good[17] != "0" else "1"))
    assert ledgerplaces.uscc_valid("91350100M000100Y43")      # a real, published code


def test_the_demo_city_gets_a_realistic_population():
    figures = stats(demo_city(), TODAY)
    assert 125_000 <= figures["residents"] <= 155_000
    assert 2.6 <= figures["residents_per_city_household"] <= 2.9
    assert 17 <= figures["over_60_%"] <= 24
    registration = figures["registration_%"]
    assert 70 <= registration["local"] <= 80 and 19 <= registration["floating"] <= 27
    assert 1 <= registration["foreign"] <= 3
    tags = figures["tags_%_of_residents"]
    assert 2 <= tags["elderly_alone"] <= 4 and 1.5 <= tags["disabled"] <= 2.5
    assert 1 <= tags["low_income"] <= 2 and tags["left_behind_child"] > 0
    assert sum(tags.get(t.value, 0) for t in RESTRICTED_TAGS) <= 0.2
    uses = figures["house_uses_%"]
    assert 66 <= uses["owner_occupied"] <= 74 and 15 <= uses["rented"] <= 21 and 6 <= uses["vacant"] <= 10

"""The demo ledger loaded into the session database: the ledger of the last grids of the session city,
in a transaction rolled back at the end (other tests keep the session city as it was). Counts
match the city, and no text or bytea column holds a generated ID number or phone in clear."""
from __future__ import annotations

from datetime import date

import psycopg2
import pytest

from core.city import City
from core.ledger import Channel, RecordKind
from database import ledgerdb
from ledger.privacy import ID_NUMBER, PHONE, Sealer, mask_id_number, new_key
from simulator.ledger import generate, load_if_empty, load_into

TODAY = date(2026, 12, 7)
GRIDS = 3
# every text and bytea column of the tables that hold personal data (bytea also read as text:
# a value stored unsealed in a bytea column would show its digits)
_ROW_TEXT = {
    "residents": "r::text || coalesce(encode(r.id_number_sealed, 'escape'), '') || "
                 "coalesce(encode(r.phone_sealed, 'escape'), '') || coalesce(encode(r.id_number_index, 'escape'), '')"
                 " || coalesce(encode(r.phone_index, 'escape'), '')",
    "units": "r::text || coalesce(encode(r.contact_phone_sealed, 'escape'), '') || "
             "coalesce(encode(r.contact_phone_index, 'escape'), '')",
    "organizations": "r::text || coalesce(encode(r.contact_phone_sealed, 'escape'), '')",
    "ledger_changes": "r::text",
}


def _part_of(city: City, grids: int) -> City:
    """The last grids of the session city (other tests plant in the first ones), with their
    buildings, units and organisations."""
    codes = {g.code for g in city.grids[-grids:]}
    return City(city.name, city.seed, grids=city.grids[-grids:],
                buildings=[b for b in city.buildings if b.grid_code in codes],
                units=[u for u in city.units if u.grid_code in codes],
                organizations=[o for o in city.organizations if o.grid_code in codes])


@pytest.fixture
def loading(settings, city):
    """A connection whose transaction is rolled back at the end, and the part of the city to load."""
    conn = psycopg2.connect(settings.pg_dsn)
    try:
        yield conn, _part_of(city, GRIDS)
    finally:
        conn.rollback()
        conn.close()


def _clear_values(part: City) -> list[str]:
    """Every ID number and phone the generator makes for this part (it is deterministic)."""
    values = []
    for grid in generate(part, TODAY):
        for building in grid.buildings:
            for _, household in building.households:
                values += [v for p in household.residents for v in (p.id_number, p.phone) if v]
        values += [c.phone for c in (*grid.units, *grid.organizations)]
    return values


def _found_in_clear(cur, values: list[str], grid_codes: list[str]) -> int:
    """How many times a value is found in the rows' text: every run of digits and capitals (an ID
    number, a phone, a passport number are such runs, or inside one) cut into substrings of the
    values' lengths, joined with the values (a hash join, not a scan per value)."""
    cur.execute("create temporary table if not exists clear_values (v text primary key) on commit drop")
    cur.execute("truncate clear_values")
    cur.executemany("insert into clear_values values (%s) on conflict do nothing", [(v,) for v in values])
    found = 0
    for table, text in _ROW_TEXT.items():
        scope = ("r.grid_code = any(%(grids)s)" if table in ("residents", "units", "organizations")
                 else "r.changed_by = 'simulator.ledger'")
        cur.execute(f"""
            with rows as (select {text} as t from {table} r where {scope}),
                 runs as (select m[1] as run from rows, regexp_matches(t, '([0-9A-Z]{{9,}})', 'g') m),
                 lengths as (select distinct length(v) as n from clear_values)
            select count(*) from runs, lengths, generate_series(1, length(run) - n + 1) i
             where substr(run, i, n) in (select v from clear_values)""", {"grids": grid_codes})
        found += cur.fetchone()[0]
    return found


def test_the_loaded_ledger_matches_the_city_and_holds_no_id_number_or_phone_in_clear(loading):
    conn, part = loading
    with conn.cursor() as cur:
        indexes = "select indexname, indexdef from pg_indexes where tablename = any(%s) order by 1"
        cur.execute(indexes, (list(ledgerdb.BULK_TABLES),))
        before = cur.fetchall()
        counts = load_into(cur, part, Sealer(new_key()), TODAY)
        cur.execute(indexes, (list(ledgerdb.BULK_TABLES),))
        assert cur.fetchall() == before        # an empty ledger's indexes are built again after the copy
        building_ids = [b.building_id for b in part.buildings]
        grid_codes = [g.code for g in part.grids]
        cur.execute("select building_id, count(*) from houses where building_id = any(%s) group by 1",
                    (building_ids,))
        houses = dict(cur.fetchall())
        assert houses == {b.building_id: b.households for b in part.buildings if b.households}
        cur.execute("select count(*) from residents where grid_code = any(%s)", (grid_codes,))
        assert cur.fetchone()[0] == counts.residents > 1000
        cur.execute("select count(*), count(distinct head_id) from households h join houses using (house_id) "
                    "where building_id = any(%s)", (building_ids,))
        assert cur.fetchone() == (counts.households, counts.households)
        cur.execute("select count(*) from households h join residents r on r.resident_id = h.head_id "
                    "where r.relation = 'head' and r.household_id = h.household_id and r.grid_code = any(%s)",
                    (grid_codes,))
        assert cur.fetchone()[0] == counts.households
        cur.execute("select count(*) from buildings where building_id = any(%s) and footprint is not null "
                    "and st_isvalid(footprint) and st_contains(st_buffer(footprint, 0.0002), "
                    "st_setsrid(st_point(lon, lat), 4326))", (building_ids,))
        assert cur.fetchone()[0] == len(part.buildings)
        cur.execute("select count(*) from things where grid_code = any(%s)", (grid_codes,))
        assert cur.fetchone()[0] == counts.things > 0
        cur.execute("select count(*) from units where grid_code = any(%s) and licence is not null "
                    "and contact_phone_masked like '1__****____'", (grid_codes,))
        assert cur.fetchone()[0] == len(part.units)
        cur.execute("select count(*) from ledger_changes where record_kind = %s and channel = %s "
                    "and record_id = any(%s)", (RecordKind.BUILDING.value, Channel.DEMO.value, building_ids))
        assert cur.fetchone()[0] == len(part.buildings)

        values = _clear_values(part)
        assert len(values) > counts.residents
        assert _found_in_clear(cur, values, grid_codes) == 0


def test_the_clear_value_check_finds_a_phone_stored_in_clear(loading):
    """The check above can fail: a phone written into a resident's name, an ID number stored
    unsealed in a bytea column, are each found."""
    conn, part = loading
    with conn.cursor() as cur:
        load_into(cur, part, Sealer(new_key()), TODAY)
        phone = next(v for v in _clear_values(part) if len(v) == 11)
        id_number = next(v for v in _clear_values(part) if len(v) == 18)
        cur.execute("update residents set name = %s where resident_id = (select min(resident_id) from residents "
                    "where grid_code = %s)", (f"x{phone}x", part.grids[0].code))
        assert _found_in_clear(cur, [phone, id_number], [g.code for g in part.grids]) == 1
        cur.execute("update residents set id_number_sealed = convert_to(%s, 'UTF8') where resident_id = "
                    "(select max(resident_id) from residents where grid_code = %s)", (id_number, part.grids[0].code))
        assert _found_in_clear(cur, [phone, id_number], [g.code for g in part.grids]) == 2


def test_sealed_fields_open_with_the_key_to_the_generated_values(loading):
    conn, part = loading
    sealer = Sealer(new_key())
    with conn.cursor() as cur:
        load_into(cur, part, sealer, TODAY)
        cur.execute("select id_number_sealed, id_number_index, id_number_masked, phone_sealed from residents "
                    "where grid_code = %s and phone_sealed is not null order by resident_id limit 50",
                    (part.grids[0].code,))
        rows = cur.fetchall()
    generated = set(_clear_values(part))
    for id_sealed, id_index, id_masked, phone_sealed in rows:
        id_number = sealer.open(ID_NUMBER, id_sealed)
        assert id_number in generated and sealer.open(PHONE, phone_sealed) in generated
        assert bytes(id_index) == sealer.index(ID_NUMBER, id_number)
        assert id_masked == mask_id_number(id_number) and "*" in id_masked


def test_a_second_load_into_a_ledger_that_is_there_loads_nothing(loading):
    conn, part = loading
    with conn.cursor() as cur:
        cur.execute("select count(*) from residents")
        before = cur.fetchone()[0]
        first = load_if_empty(cur, part, Sealer(new_key()), TODAY)
        if before:       # another test's residents are in the session database: nothing is loaded
            assert first is None
        else:
            assert first is not None and first.residents > 0
        assert not ledgerdb.ledger_is_empty(cur)
        cur.execute("select count(*) from residents")
        after_first = cur.fetchone()[0]
        assert load_if_empty(cur, part, Sealer(new_key()), TODAY) is None
        cur.execute("select count(*) from residents")
        assert cur.fetchone()[0] == after_first


def test_a_load_that_fails_on_the_server_raises_its_error(loading):
    """The copying thread's error reaches the caller (the parts' codes are there already)."""
    conn, part = loading
    with conn.cursor() as cur:
        load_into(cur, part, Sealer(new_key()), TODAY)
        with pytest.raises(psycopg2.errors.UniqueViolation):
            load_into(cur, part, Sealer(new_key()), TODAY)

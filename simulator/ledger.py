"""The demo city's ledger (基础数据), generated from the city and loaded:
`python -m simulator.ledger load [--residents N] [--replace] | stats [--scale demo|big] [--residents N]`.

`generate(city, today, residents)` walks the city grid by grid and yields a `GridLedger` each time
(streaming: a big city's two million residents are never held at once): every building's
entrances, footprint and houses (simulator.ledgerplaces), the households in its occupied houses
(simulator.ledgerpeople), the grid's urban parts and its shops' and organisations' ledger fields.
The same city, seed and day give the same ledger. The number of residents aims at `residents`
(default: 2.65 per household of the city, ≈ 140,000 for the demo city) by mixing the household
structures between a smaller and a larger set, calibrated on a sample first.

`load_into(cur, city, sealer, ...)` seals every ID number and phone with the stack's key
(ledger.privacy.Sealer), numbers the rows and copies them in (database.ledgerdb);
`load_demo_ledger` does it in ONE transaction when the ledger is empty: a ledger is there whole or
not at all, so a restart that finds it empty loads it again, one that finds it does not.
History: one 'create' change per building's ledger (its houses, households and residents, with
their counts), one per part and per shop or organisation filled in, channel 'demo', rather than a
row per resident, which would triple the load and tell nothing more.
"""
from __future__ import annotations

import argparse
import json
import queue
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date

from shapely.geometry import Polygon

from core.city import Building, City, Grid
from core.ledger import ChangeAction, Channel, HouseUse, RecordKind
from database import ledgerdb
from ledger.privacy import ID_NUMBER, PHONE, Sealer, mask_id_number, mask_phone
from simulator import ledgerplaces as places
from simulator.ledgerpeople import Household, Identities, PeopleMaker, Resident

RESIDENTS_PER_HOUSEHOLD = 2.65        # the demo's aim per household the city counts
SECOND_HOUSEHOLD_IN_RENTED = 0.15     # a rented house sometimes holds two households
CHANGED_BY = "simulator.ledger"
BATCH_RESIDENTS = 25_000              # rows copied per batch while generating


@dataclass
class BuildingLedger:
    building: Building
    entrances: int
    footprint: Polygon
    houses: list[places.House]
    households: list[tuple[int, Household]]        # (index of its house in `houses`, household)


@dataclass
class Contact:
    """A shop's or organisation's ledger fields (the phone in clear: the loader seals it)."""
    record_id: str
    building_id: str | None
    name: str
    phone: str
    licence: str | None = None
    fire_key_unit: bool = False


@dataclass
class GridLedger:
    grid: Grid
    buildings: list[BuildingLedger] = field(default_factory=list)
    things: list[places.Thing] = field(default_factory=list)
    units: list[Contact] = field(default_factory=list)
    organizations: list[Contact] = field(default_factory=list)


def _households(maker: PeopleMaker, houses: list[places.House], region: str) -> list[tuple[int, Household]]:
    """Households for the occupied houses (owner-occupied, rented: sometimes two)."""
    found = []
    for i, house in enumerate(houses):
        if house.use not in (HouseUse.OWNER_OCCUPIED, HouseUse.RENTED):
            continue
        found.append((i, maker.household(house.use, region)))
        if house.use is HouseUse.RENTED and maker.rng.random() < SECOND_HOUSEHOLD_IN_RENTED:
            found.append((i, maker.household(house.use, region)))
    return found


def calibrate(seed: int, today: date, households: int, residents: int) -> float:
    """The structure mix (0 small .. 1 large) that gives `residents` over `households` houses,
    from the mean residents per house of each end on a fixed sample (the mean is linear in the
    mix: both ends' weights sum alike). Clamped: a target out of reach gets the nearest end."""
    means = []
    for mix in (0.0, 1.0):
        rng = random.Random(f"calibrate-{seed}")
        maker = PeopleMaker(rng, today, mix, Identities(0))
        uses, weights = zip(*places.USE_WEIGHTS, (HouseUse.COMMERCIAL, 100 * places.COMMERCIAL_SHARE), strict=True)
        sample = [places.House(1, 1, "101", 80.0, rng.choices(uses, weights)[0]) for _ in range(4000)]
        means.append(sum(len(h.residents) for _, h in _households(maker, sample, "350102")) / len(sample))
    wanted = residents / max(households, 1)
    return min(1.0, max(0.0, (wanted - means[0]) / (means[1] - means[0])))


def generate(city: City, today: date, residents: int | None = None) -> Iterator[GridLedger]:
    """The city's ledger, a grid at a time (see the module); deterministic in (city, today, residents)."""
    households = sum(b.households for b in city.buildings)
    target = residents if residents is not None else round(households * RESIDENTS_PER_HOUSEHOLD)
    rng = random.Random(f"ledger-{city.seed}")
    maker = PeopleMaker(rng, today, calibrate(city.seed, today, households, target), Identities(rng.randrange(10**8)))
    by_grid: dict[str, list] = {g.code: [[], [], []] for g in city.grids}
    for building in city.buildings:
        by_grid[building.grid_code][0].append(building)
    for unit in city.units:
        by_grid[unit.grid_code][1].append(unit)
    for org in city.organizations:
        by_grid[org.grid_code][2].append(org)
    for grid in city.grids:
        yield _grid_ledger(grid, *by_grid[grid.code], maker)


def _grid_ledger(grid: Grid, buildings: list[Building], units: list, organizations: list,
                 maker: PeopleMaker) -> GridLedger:
    rng, region = maker.rng, grid.code[:6]
    ledger = GridLedger(grid)
    placed: list[Polygon] = []
    for building in buildings:
        houses = places.houses_of(building, rng)
        outline = places.footprint(building, grid, placed, rng)
        placed.append(outline)
        ledger.buildings.append(BuildingLedger(building, places.entrances_of(building), outline, houses,
                                               _households(maker, houses, region)))
    entrances = {b.building.building_id: b.entrances for b in ledger.buildings}
    ledger.things = [*places.edge_things(grid, rng), *places.building_things(grid, buildings, entrances, rng),
                     *places.aeds(grid, units, buildings, rng)]
    for unit in units:
        ledger.units.append(Contact(unit.unit_id, places.nearest_building(unit.lon, unit.lat, buildings),
                                    maker.contact_name(), maker.identities.phone(), places.uscc(region, rng),
                                    places.fire_key_unit(unit.kind, rng)))
    for org in organizations:
        ledger.organizations.append(Contact(org.org_id, rng.choice(buildings).building_id if buildings else None,
                                            maker.contact_name(), maker.identities.phone()))
    return ledger


# --- loading ---------------------------------------------------------------------------------------
@dataclass
class Counts:
    buildings: int = 0
    houses: int = 0
    households: int = 0
    residents: int = 0
    tags: int = 0
    things: int = 0
    units: int = 0
    organizations: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        return (f"{self.residents:,} residents in {self.households:,} households, {self.houses:,} houses of "
                f"{self.buildings:,} buildings, {self.things:,} parts, {self.units:,} shops and units")


class _Rows:
    """Turns generated records into `ledgerdb.LedgerRows`: numbers them from the reserved ids and
    seals every personal field; nothing in clear leaves this class."""

    def __init__(self, sealer: Sealer, ids: ledgerdb.IdBlock, counts: Counts) -> None:
        self.sealer, self.ids, self.counts = sealer, ids, counts
        self.rows = ledgerdb.LedgerRows()

    def take(self) -> ledgerdb.LedgerRows:
        """The rows made so far, for copying; the next ones go into a new batch."""
        batch, self.rows = self.rows, ledgerdb.LedgerRows()
        return batch

    def _sealed(self, field_name: str, text: str | None, mask: Callable[[str], str]) -> tuple:
        if text is None:
            return None, None, None
        return (ledgerdb.bytea(self.sealer.seal(field_name, text)), ledgerdb.bytea(self.sealer.index(field_name, text)),
                mask(text))

    def grid(self, ledger: GridLedger) -> None:
        for building in ledger.buildings:
            self._building(ledger.grid.code, building)
        change = (ChangeAction.CREATE.value, CHANGED_BY, Channel.DEMO.value)
        for thing in ledger.things:
            self.rows.things.append((thing.thing_id, thing.kind.value, thing.grid_code, thing.building_id,
                                     f"SRID=4326;POINT({thing.lon} {thing.lat})", thing.owner, thing.state.value))
            self.rows.changes.append((RecordKind.THING.value, thing.thing_id, 1, *change,
                                      json.dumps({"kind": thing.kind.value, "state": thing.state.value})))
        for unit in ledger.units:
            self.rows.units.append((unit.record_id, unit.building_id, unit.licence, unit.name,
                                    *self._sealed(PHONE, unit.phone, mask_phone), unit.fire_key_unit))
            self.rows.changes.append((RecordKind.UNIT.value, unit.record_id, 1, *change, json.dumps(
                {"licence": unit.licence, "fire_key_unit": unit.fire_key_unit, "building_id": unit.building_id})))
        for org in ledger.organizations:
            self.rows.organizations.append((org.record_id, org.building_id, org.name,
                                            *self._sealed(PHONE, org.phone, mask_phone)))
            self.rows.changes.append((RecordKind.ORGANIZATION.value, org.record_id, 1, *change,
                                      json.dumps({"building_id": org.building_id})))
        self.counts.things += len(ledger.things)
        self.counts.units += len(ledger.units)
        self.counts.organizations += len(ledger.organizations)

    def _building(self, grid_code: str, ledger: BuildingLedger) -> None:
        b_id = ledger.building.building_id
        self.rows.buildings.append((b_id, ledger.entrances, f"SRID=4326;{ledger.footprint.wkt}"))
        first_house = self.ids.house
        for house in ledger.houses:
            self.rows.houses.append((self.ids.house, b_id, grid_code, house.entrance, house.floor, house.number,
                                     house.area_m2, house.use.value))
            self.ids.house += 1
        people = 0
        for index, household in ledger.households:
            household_id, head_id = self.ids.household, self.ids.resident
            self.ids.household += 1
            self.rows.households.append((household_id, first_house + index, head_id))
            for person in household.residents:
                self._resident(person, household_id, grid_code)
            people += len(household.residents)
        self.rows.changes.append((RecordKind.BUILDING.value, b_id, 1, ChangeAction.CREATE.value, CHANGED_BY,
                                  Channel.DEMO.value, json.dumps({
                                      "entrances": ledger.entrances, "houses": len(ledger.houses),
                                      "households": len(ledger.households), "residents": people})))
        self.counts.buildings += 1
        self.counts.houses += len(ledger.houses)
        self.counts.households += len(ledger.households)
        self.counts.residents += people

    def _resident(self, person: Resident, household_id: int, grid_code: str) -> None:
        resident_id = self.ids.resident
        self.ids.resident += 1
        id_mask = mask_id_number
        self.rows.residents.append((
            resident_id, household_id, grid_code, person.relation.value, person.name, person.gender.value,
            person.birth_date, *self._sealed(ID_NUMBER, person.id_number, id_mask),
            *self._sealed(PHONE, person.phone, mask_phone), person.registration.value, person.moved_in,
            person.moved_out))
        for tag, since in person.tags.items():
            self.rows.tags.append((resident_id, tag.value, since))
        self.counts.tags += len(person.tags)


def load_into(cur, city: City, sealer: Sealer, today: date, residents: int | None = None,
              progress: Callable[[Counts], None] | None = None) -> Counts:
    """Generate the city's ledger and copy it in on `cur`, in the caller's transaction, a batch
    of about BATCH_RESIDENTS residents at a time; the people tables stay locked to other writers
    until that transaction ends. Into tables that never held a house or a resident (a new
    demo, a bench), their secondary indexes are dropped first and built after the copy: for two
    million residents that is the difference between index pages read at random and one sort."""
    started = time.monotonic()
    counts = Counts()
    ids = ledgerdb.reserve_ids(cur)
    indexes = ledgerdb.drop_secondary_indexes(cur) if ledgerdb.ledger_is_empty(cur) else []
    rows = _Rows(sealer, ids, counts)
    writer = _Writer(cur)
    try:
        for grid_ledger in generate(city, today, residents):
            rows.grid(grid_ledger)
            if len(rows.rows.residents) >= BATCH_RESIDENTS:
                writer.put(rows.take())
                if progress:
                    progress(counts)
        writer.put(rows.take())
    finally:
        writer.close()
    ledgerdb.create_indexes(cur, indexes)
    ledgerdb.finish_ids(cur, ids)
    counts.seconds = time.monotonic() - started
    return counts


class _Writer:
    """Copies batches on a thread of its own while the next batch is generated (COPY waits on
    the server, which works on the other core), at most one batch waiting: memory stays bounded.
    The first error stops the copying and is raised to the generating thread at its next `put`
    or at `close`, which always waits for the thread: the cursor is the caller's again after it."""

    def __init__(self, cur) -> None:
        self._cur = cur
        self._batches: queue.Queue[ledgerdb.LedgerRows | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ledger-copy", daemon=True)
        self._thread.start()

    def put(self, batch: ledgerdb.LedgerRows) -> None:
        self._raise()
        self._batches.put(batch)

    def close(self) -> None:
        self._batches.put(None)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (batch := self._batches.get()) is not None:
            if self._error is None:
                try:
                    ledgerdb.write(self._cur, batch)
                except BaseException as exc:     # handed to the generating thread, which raises it
                    self._error = exc


def load_if_empty(cur, city: City, sealer: Sealer, today: date,
                  progress: Callable[[Counts], None] | None = None) -> Counts | None:
    """The city's ledger loaded on `cur` if no house or resident is stored (None: there was a ledger)."""
    cur.execute("lock table houses, households, residents in share row exclusive mode")
    if not ledgerdb.ledger_is_empty(cur):
        return None
    return load_into(cur, city, sealer, today, progress=progress)


def load_demo_ledger(conn, city: City, ledger_key: str, today: date | None = None,
                     progress: Callable[[Counts], None] | None = None) -> Counts | None:
    """The demo stack's start: the city's ledger, sealed with the stack's key, loaded in ONE
    transaction when the ledger is empty (a ledger is there whole or not at all, so a start that
    failed half-way loads it again next time); None when a ledger was there."""
    with conn, conn.cursor() as cur:
        return load_if_empty(cur, city, Sealer(ledger_key), today or date.today(), progress)


# --- the command line ------------------------------------------------------------------------------
def stats(city: City, today: date, residents: int | None = None) -> dict[str, object]:
    """What the generator makes of a city, without a database: counts and the shares that make
    it realistic (age over 60, registration, tags, house uses, parts' states)."""
    people, over_60, over_65 = 0, 0, 0
    registration, tags, uses, states, sizes = Counter(), Counter(), Counter(), Counter(), Counter()
    houses = households = 0
    for grid_ledger in generate(city, today, residents):
        states.update(t.state.value for t in grid_ledger.things)
        for building in grid_ledger.buildings:
            houses += len(building.houses)
            uses.update(h.use.value for h in building.houses)
            households += len(building.households)
            for _, household in building.households:
                sizes[len(household.residents)] += 1
                for person in household.residents:
                    age = (today - person.birth_date).days / 365.25
                    people += 1
                    over_60 += age >= 60
                    over_65 += age >= 65
                    registration[person.registration.value] += 1
                    tags.update(t.value for t in person.tags)
    share = lambda n, of: round(100 * n / max(of, 1), 2)   # noqa: E731
    return {"residents": people, "households": households, "houses": houses,
            "city_households": sum(b.households for b in city.buildings),
            "residents_per_city_household": round(people / max(sum(b.households for b in city.buildings), 1), 2),
            "over_60_%": share(over_60, people), "over_65_%": share(over_65, people),
            "registration_%": {k: share(v, people) for k, v in registration.items()},
            "tags_%_of_residents": {k: share(v, people) for k, v in sorted(tags.items())},
            "house_uses_%": {k: share(v, houses) for k, v in uses.items()},
            "household_sizes": dict(sorted(sizes.items())),
            "parts_%": {k: share(v, sum(states.values())) for k, v in states.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.ledger", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("load", "stats"))
    parser.add_argument("--residents", type=int, help="aim at this many residents (default: 2.65 per household)")
    parser.add_argument("--scale", choices=("demo", "big"), default="demo", help="stats: the generated city")
    parser.add_argument("--seed", type=int, default=20261121, help="stats: the city's seed")
    parser.add_argument("--replace", action="store_true", help="load: remove the ledger there first")
    args = parser.parse_args(argv)
    if args.residents is not None and args.residents < 0:
        parser.error("--residents must be 0 or more")
    if args.command == "stats":
        from simulator.citygen import SCALES
        from simulator.citygen import generate as generate_city

        print(json.dumps(stats(generate_city(SCALES[args.scale], args.seed), date.today(), args.residents),
                         ensure_ascii=False, indent=2))
        return 0
    return _load_command(args.residents, args.replace)


def _load_command(residents: int | None, replace: bool) -> int:
    """`load`: the ledger of the city in the database (GCC_PG_*), sealed with GCC_LEDGER_KEY."""
    import psycopg2

    from config.settings import settings
    from database.citydb import read_city

    key = settings().ledger_key.get_secret_value()
    if not key:
        print("GCC_LEDGER_KEY is not set: the ledger's personal data cannot be sealed", file=sys.stderr)
        return 2
    conn = psycopg2.connect(settings().pg_dsn)
    try:
        try:
            city = read_city(conn)
        except LookupError as exc:
            print(f"{exc}: the ledger is made from the city in the database", file=sys.stderr)
            return 2
        with conn, conn.cursor() as cur:
            if not ledgerdb.ledger_is_empty(cur):
                if not replace:
                    print("the ledger is not empty: --replace removes it first", file=sys.stderr)
                    return 1
                ledgerdb.clear_ledger(cur)
        with conn, conn.cursor() as cur:
            counts = load_into(cur, city, Sealer(key), date.today(), residents, progress=lambda c: print(
                f"  … {c.residents:,} residents", file=sys.stderr, flush=True))
    finally:
        conn.close()
    print(f"loaded the ledger of {city.name}: {counts.line()} in {counts.seconds:.1f} s "
          f"({counts.residents / max(counts.seconds, 1e-9):,.0f} residents/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fills one grid of the demo city with its "five elements": buildings (places), units and
organizations, the IoT devices in the buildings with their gateways (things), and the grid's four
members with their terminals (people).

Ids are readable and carry the grid code: building B<grid>-03, gateway GW-B<grid>-03 (meters and
gas detectors) and EC-B<grid>-03 (elevator controller), sensor B<grid>-03-EL1, terminal T<grid>-2.
"""
from __future__ import annotations

import random

from shapely.geometry import Point, Polygon

from core.catalogue import DeviceKind
from core.city import Building, City, Gateway, GatewayKind, Grid, GridKind, Member, Organization, Sensor, Unit
from core.roles import Role
from simulator import citynames

_ROLES = [Role.GRID_ADMINISTRATOR, Role.GRID_COORDINATOR, Role.GRID_POLICE_OFFICER, Role.GRID_SUPERVISOR]
_ABBR = {DeviceKind.ELEVATOR: "EL", DeviceKind.GAS_DETECTOR: "GD", DeviceKind.WATER_METER: "WM",
         DeviceKind.ELECTRICITY_METER: "EM", DeviceKind.GAS_METER: "GM"}
_HOUSEHOLD_METERS = [DeviceKind.WATER_METER, DeviceKind.ELECTRICITY_METER, DeviceKind.GAS_METER]


def _point_in(poly: Polygon, rng: random.Random, margin: float = 0.15) -> tuple[float, float]:
    """A random point inside the polygon, kept off its edges (buildings do not straddle borders)."""
    inner = poly.buffer(-margin * (poly.area ** 0.5) / 4)
    target = inner if not inner.is_empty and inner.area > 0 else poly
    minx, miny, maxx, maxy = target.bounds
    while True:
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if target.contains(Point(x, y)):
            return round(x, 7), round(y, 7)


def _buildings(grid: Grid, rng: random.Random) -> list[Building]:
    if grid.kind is GridKind.UNIT:
        count, households_left = rng.randint(2, 4), grid.households
    else:
        count, households_left = max(3, round(grid.households / rng.uniform(45, 90))), grid.households
    buildings = []
    for i in range(1, count + 1):
        households = households_left if i == count else households_left // (count - i + 1)
        households_left -= households
        high_rise = rng.random() < (0.6 if grid.kind is GridKind.UNIT else 0.35)
        floors = rng.randint(11, 33) if high_rise else rng.randint(4, 7)
        lon, lat = _point_in(grid.boundary, rng)
        buildings.append(Building(f"B{grid.code}-{i:02d}", grid.code, f"Building {i}", lon, lat,
                                  floors, households))
    return buildings


def _devices(city: City, building: Building, rng: random.Random, household_meters: int) -> None:
    kinds: list[DeviceKind] = []
    if building.floors > 7:
        kinds += [DeviceKind.ELEVATOR] * (1 + building.floors // 15)
    kinds += [DeviceKind.GAS_DETECTOR] * max(1, building.households // 40)
    kinds += [DeviceKind.WATER_METER, DeviceKind.ELECTRICITY_METER, DeviceKind.GAS_METER]
    kinds += [_HOUSEHOLD_METERS[i % 3] for i in range(min(household_meters, 3 * building.households))]

    gateway = Gateway(f"GW-{building.building_id}", GatewayKind.BUILDING_GATEWAY, building.building_id,
                      building.grid_code, "senml" if rng.random() < 0.7 else "json")
    city.gateways.append(gateway)
    controller = None
    if DeviceKind.ELEVATOR in kinds:
        controller = Gateway(f"EC-{building.building_id}", GatewayKind.ELEVATOR_CONTROLLER,
                             building.building_id, building.grid_code, "json")
        city.gateways.append(controller)
    numbers: dict[DeviceKind, int] = {}
    for kind in kinds:
        numbers[kind] = numbers.get(kind, 0) + 1
        via = controller if kind is DeviceKind.ELEVATOR else gateway
        city.sensors.append(Sensor(f"{building.building_id}-{_ABBR[kind]}{numbers[kind]}", kind,
                                   building.building_id, via.gateway_id, building.grid_code,
                                   building.lon, building.lat))


def _person(rng: random.Random) -> str:
    given = "".join(rng.choice(citynames.GIVEN) for _ in range(rng.choice((1, 2))))
    return rng.choice(citynames.SURNAMES) + given


def stock_grid(city: City, grid: Grid, rng: random.Random, household_meters: int = 0) -> None:
    for building in _buildings(grid, rng):
        city.buildings.append(building)
        _devices(city, building, rng, household_meters)
    unit_kinds = citynames.UNIT_SITE_KINDS if grid.kind is GridKind.UNIT else citynames.UNIT_KINDS
    for i in range(1, rng.randint(3, 9) + 1):
        kind = rng.choice(unit_kinds)
        lon, lat = _point_in(grid.boundary, rng)
        city.units.append(Unit(f"U{grid.code}-{i:02d}", grid.code, f"{kind.replace('_', ' ')} {i}",
                               kind, lon, lat))
    for i, kind in enumerate(rng.sample(citynames.ORG_KINDS, rng.randint(1, 3)), 1):
        city.organizations.append(Organization(f"O{grid.code}-{i:02d}", grid.code,
                                               f"{kind.replace('_', ' ')} of {grid.name}", kind))
    for i, role in enumerate(_ROLES, 1):
        city.members.append(Member(f"M{grid.code}-{i}", _person(rng), role, grid.code, f"T{grid.code}-{i}"))

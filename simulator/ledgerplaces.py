"""The demo ledger's places and things (地/物): a building's entrances, houses and footprint, the
grid's urban parts (部件) and its shops' ledger fields. Pure and deterministic (a `random.Random`).

- Houses: `entrances` 1–4 by size, the city's floors, the building's households spread over
  entrance × floor as evenly as can be (so a building has exactly as many houses as the city says
  households), numbered floor + two digits (`501`), 40–140 m², uses ≈ 70 % owner-occupied, 18 %
  rented, 8 % vacant, 2 % commercial (ground floor only), 2 % other.
- Footprint: an oriented rectangle (an L for some long slabs) around the building's point, sized by
  its houses per floor, shrunk or turned until it lies inside its grid and off the footprints
  already placed there; a small square where nothing fits.
- Parts: hydrants, manhole covers, street lamps and cameras along the grid's edge (the streets),
  fire extinguishers in every entrance, AEDs at some hospitals, clinics, schools, hotels, campuses;
  codes `HYD-<grid>-<n>`; ≈ 97 % good.
- Shops and units: the building they are in (the nearest in the grid within 150 m), a unified
  social credit code (GB 32100, with its check characters), a contact, the fire-safety key unit
  flag for ≈ 40 % of restaurants, markets, hotels, hospitals and factories (≈ 10 % of all units).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import shapely
from shapely.geometry import Polygon, box

from core.city import Building, Grid, Unit
from core.ledger import HouseUse, ThingKind, ThingState

M_PER_DEG_LAT = 110_574.0
HOUSE_AREA = (40.0, 140.0)
USE_WEIGHTS = ((HouseUse.OWNER_OCCUPIED, 70), (HouseUse.RENTED, 18), (HouseUse.VACANT, 8), (HouseUse.OTHER, 2))
COMMERCIAL_SHARE = 0.02
THING_PREFIX = {ThingKind.HYDRANT: "HYD", ThingKind.MANHOLE_COVER: "MH", ThingKind.STREET_LAMP: "LMP",
                ThingKind.CAMERA: "CAM", ThingKind.FIRE_EXTINGUISHER: "EXT", ThingKind.AED: "AED"}
EDGE_SPACING_M = {ThingKind.STREET_LAMP: 50, ThingKind.MANHOLE_COVER: 80, ThingKind.HYDRANT: 120,
                  ThingKind.CAMERA: 200}
THING_OWNERS = {ThingKind.HYDRANT: "市自来水公司 city water company",
                ThingKind.MANHOLE_COVER: "市政排水公司 drainage company",
                ThingKind.STREET_LAMP: "城市照明管理处 street lighting office",
                ThingKind.CAMERA: "公安分局 police bureau",
                ThingKind.FIRE_EXTINGUISHER: "物业服务企业 property company", ThingKind.AED: "红十字会 Red Cross"}
AED_KINDS = frozenset({"hospital", "clinic", "campus", "office_park", "hotel", "primary_school", "wholesale_market"})
FIRE_KEY_KINDS = frozenset({"restaurant", "market", "wholesale_market", "hotel", "hospital", "factory"})
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


@dataclass(frozen=True)
class House:
    entrance: int
    floor: int
    number: str
    area_m2: float
    use: HouseUse


@dataclass(frozen=True)
class Thing:
    thing_id: str
    kind: ThingKind
    grid_code: str
    building_id: str | None
    lon: float
    lat: float
    owner: str
    state: ThingState


def entrances_of(building: Building) -> int:
    """1–4 entrances (单元), by how many houses each floor must hold."""
    return max(1, min(4, math.ceil(building.households / (building.floors * 3))))


def houses_of(building: Building, rng: random.Random) -> list[House]:
    """The building's houses: its households spread over entrance × floor (see the module)."""
    entrances = entrances_of(building)
    slots = [(e, f) for f in range(1, building.floors + 1) for e in range(1, entrances + 1)]
    per_slot, extra = divmod(building.households, len(slots))
    ground = sum(per_slot + (i < extra) for i, (_, f) in enumerate(slots) if f == 1)
    commercial = min(0.6, COMMERCIAL_SHARE * building.households / ground) if ground else 0.0
    uses, weights = zip(*USE_WEIGHTS, strict=True)
    houses = []
    for i, (entrance, floor) in enumerate(slots):
        for n in range(1, per_slot + (i < extra) + 1):
            use = (HouseUse.COMMERCIAL if floor == 1 and rng.random() < commercial
                   else rng.choices(uses, weights)[0])
            area = round(rng.triangular(*HOUSE_AREA, 60 if use is HouseUse.RENTED else 88), 1)
            houses.append(House(entrance, floor, f"{floor}{n:02d}", area, use))
    return houses


def _m_per_deg_lon(lat: float) -> float:
    return 111_320.0 * math.cos(math.radians(lat))


def _shape(building: Building, rng: random.Random) -> Polygon:
    """A footprint in metres around (0, 0): slab or tower by floors, sized by houses per floor."""
    per_floor = max(2.0, building.households / building.floors)
    area = per_floor * 110.0
    if building.floors > 18:
        side = math.sqrt(area)
        return box(-side / 2, -side / 2, side / 2, side / 2)
    depth = rng.uniform(11, 14)
    length = max(depth, area / depth)
    slab = box(-length / 2, -depth / 2, length / 2, depth / 2)
    if length > 45 and rng.random() < 0.3:        # an L: a wing at one end
        wing = box(length / 2 - depth, depth / 2 - 1, length / 2, depth / 2 + length * 0.3)
        return shapely.union(slab, wing).buffer(0)
    return slab


def _placed(shape_m: Polygon, building: Building, angle: float, scale: float) -> Polygon:
    turned = shapely.affinity.rotate(shapely.affinity.scale(shape_m, scale, scale, origin=(0, 0)), angle,
                                     origin=(0, 0))
    kx, ky = 1 / _m_per_deg_lon(building.lat), 1 / M_PER_DEG_LAT
    return shapely.affinity.affine_transform(turned, [kx, 0, 0, ky, building.lon, building.lat])


def footprint(building: Building, grid: Grid, neighbours: list[Polygon], rng: random.Random) -> Polygon:
    """The building's footprint (WGS 84), inside its grid and off `neighbours` where it can be."""
    shape_m = _shape(building, rng)
    angle = rng.gauss(0, 12)                  # most blocks face south, give or take
    for attempt in range(8):
        scale = 0.85 ** attempt
        candidate = _placed(shape_m, building, angle + (attempt % 2) * 90, scale)
        if grid.boundary.contains(candidate) and not any(candidate.intersects(n) for n in neighbours):
            return candidate
    return _placed(box(-4, -4, 4, 4), building, angle, 1.0)


def _state(rng: random.Random) -> ThingState:
    draw = rng.random()
    if draw < 0.97:
        return ThingState.GOOD
    return ThingState.DAMAGED if draw < 0.988 else ThingState.UNDER_REPAIR if draw < 0.996 else ThingState.MISSING


def edge_things(grid: Grid, rng: random.Random) -> list[Thing]:
    """Street parts along the grid's edge (its streets), a few metres inside it."""
    lat = grid.boundary.centroid.y
    deg_per_m = 1 / math.sqrt(_m_per_deg_lon(lat) * M_PER_DEG_LAT)
    inner = grid.boundary.buffer(-6 * deg_per_m)
    ring = (inner if isinstance(inner, Polygon) and not inner.is_empty else grid.boundary).exterior
    things = []
    for kind, spacing in EDGE_SPACING_M.items():
        step = spacing * deg_per_m
        start = rng.uniform(0, step)
        for n in range(1, int((ring.length - start) / step) + 2):
            at = ring.interpolate(start + (n - 1) * step)
            things.append(Thing(f"{THING_PREFIX[kind]}-{grid.code}-{n}", kind, grid.code, None,
                                round(at.x, 7), round(at.y, 7), THING_OWNERS[kind], _state(rng)))
    return things


def building_things(grid: Grid, buildings: list[Building], entrances: dict[str, int],
                    rng: random.Random) -> list[Thing]:
    """Fire extinguishers: one per entrance and every three floors, at the building's point."""
    things, n = [], 0
    for building in buildings:
        for _ in range(entrances[building.building_id] * math.ceil(building.floors / 3)):
            n += 1
            things.append(Thing(f"EXT-{grid.code}-{n}", ThingKind.FIRE_EXTINGUISHER, grid.code,
                                building.building_id, building.lon, building.lat,
                                THING_OWNERS[ThingKind.FIRE_EXTINGUISHER], _state(rng)))
    return things


def nearest_building(unit_lon: float, unit_lat: float, buildings: list[Building], within_m: float = 150) -> str | None:
    """The id of the grid's building nearest a point, if one is within `within_m` metres."""
    best, best_m = None, within_m
    for b in buildings:
        dx = (b.lon - unit_lon) * _m_per_deg_lon(unit_lat)
        dy = (b.lat - unit_lat) * M_PER_DEG_LAT
        if math.hypot(dx, dy) <= best_m:
            best, best_m = b.building_id, math.hypot(dx, dy)
    return best


def aeds(grid: Grid, units: list[Unit], buildings: list[Building], rng: random.Random) -> list[Thing]:
    """AEDs at about half of the grid's hospitals, clinics, schools, hotels, campuses and parks."""
    return [Thing(f"AED-{grid.code}-{n}", ThingKind.AED, grid.code, nearest_building(u.lon, u.lat, buildings),
                  u.lon, u.lat, THING_OWNERS[ThingKind.AED], _state(rng))
            for n, u in enumerate((u for u in units if u.kind in AED_KINDS and rng.random() < 0.5), 1)]


def org_code(body8: str) -> str:
    """A 9-character organisation code (GB 11714): 8 digits and its check character."""
    check = 11 - sum(int(c) * w for c, w in zip(body8, _ORG_WEIGHTS, strict=True)) % 11
    return body8 + ("X" if check == 10 else "0" if check == 11 else str(check))


def uscc(region: str, rng: random.Random) -> str:
    """A unified social credit code (统一社会信用代码, GB 32100): 9 (market supervision), 1/2/3
    (company, sole trader, ...), the region, an organisation code, the check character."""
    first17 = "9" + rng.choice("123") + region + org_code(f"{rng.randrange(10**8):08d}")
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return first17 + _USCC_CHARS[(31 - total % 31) % 31]


def uscc_valid(code: str) -> bool:
    """Whether an 18-character code's GB 32100 check character is right (for the tests)."""
    if len(code) != 18 or any(c not in _USCC_CHARS for c in code):
        return False
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(code[:17], _USCC_WEIGHTS, strict=True))
    return _USCC_CHARS[(31 - total % 31) % 31] == code[17]


def fire_key_unit(kind: str, rng: random.Random) -> bool:
    return kind in FIRE_KEY_KINDS and rng.random() < 0.4

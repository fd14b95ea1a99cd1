"""A community's places as shapes (issue 26: "the community map with building footprints and things;
a 3D view of a community, buildings extruded by their floors, drawn offline from our own data"):
each building's footprint with what its houses hold (counted, never named), the urban parts as
points, and the pure geometry that turns a footprint into an extruded mesh in metres.

Reads are scoped like every ledger read (nothing outside the scope is returned) and sized for one
community (~30–150 buildings, a few hundred parts): one query per layer, grouped in SQL.
The meshes are computed here, in Python, from the footprints: no tile, no external service.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import shapely
from shapely.geometry import Polygon

from core.ledger import NEEDS_HELP_FIRST, HouseUse
from core.orgcodes import Scope
from database.reads import Reads

FLOOR_HEIGHT_M = 3.0        # a storey, as the 3D view draws it
MOST_BUILDINGS = 400        # a map draws at most this many (a community has 30–150): more, narrow the scope
_EARTH_M = 6_371_008.8      # mean radius: metres per radian


@dataclass(frozen=True)
class BuildingShape:
    building_id: str
    name: str
    grid_code: str
    floors: int
    ring: tuple[tuple[float, float], ...]      # the footprint's outer ring (lon, lat), open (first ≠ last)
    houses: dict[str, int]                     # HouseUse value -> how many houses
    residents: int                             # current residents
    needs_help: int                            # current residents tagged with one of NEEDS_HELP_FIRST

    @property
    def house_count(self) -> int:
        return sum(self.houses.values())

    @property
    def main_use(self) -> HouseUse | None:
        """The use most of its houses have, a tie going to the use named first in HouseUse (None: no
        house in the ledger)."""
        if not self.houses:
            return None
        return max(HouseUse, key=lambda use: (self.houses.get(use.value, 0), -list(HouseUse).index(use)))

    @property
    def occupancy(self) -> float | None:
        """The share of its houses not vacant (None: no house)."""
        total = self.house_count
        return None if not total else 1 - self.houses.get(HouseUse.VACANT.value, 0) / total


@dataclass(frozen=True)
class PartPoint:
    thing_id: str
    kind: str          # ThingKind value
    state: str         # ThingState value
    lon: float
    lat: float


@dataclass(frozen=True)
class Mesh:
    """Triangles over vertices in metres (x east, y north, z up), as Plotly's Mesh3d takes them."""
    x: tuple[float, ...]
    y: tuple[float, ...]
    z: tuple[float, ...]
    i: tuple[int, ...]
    j: tuple[int, ...]
    k: tuple[int, ...]


_CURRENT = "(r.moved_out is null or r.moved_out > current_date)"


class PlaceReads(Reads):
    """The map's and the 3D view's reads, on a pool of the dashboard's connections."""

    def buildings(self, scope: Scope) -> tuple[list[BuildingShape], bool]:
        """The scope's buildings with a footprint, their houses by use, residents and those
        needing help first (counts), by id; and whether there were more than MOST_BUILDINGS."""
        rows = self.rows(f"""
            with b as (select building_id, name, grid_code, floors, ST_AsGeoJSON(footprint) as shape from buildings
                        where org_contains(%(scope)s, grid_code) and footprint is not null
                        order by building_id limit %(most)s),
                 h as (select h.building_id, h.use, count(*) as n from houses h join b using (building_id)
                        group by 1, 2),
                 r as (select h.building_id, count(*) as people,
                              count(*) filter (where exists (select 1 from resident_tags t where
                                  t.resident_id = r.resident_id and t.tag = any(%(help)s))) as help
                         from houses h join b using (building_id) join households hh using (house_id)
                         join residents r using (household_id) where {_CURRENT} group by 1)
            select b.building_id, b.name, b.grid_code, b.floors, b.shape,
                   coalesce((select jsonb_object_agg(h.use, h.n) from h where h.building_id = b.building_id), '{{}}'),
                   coalesce(r.people, 0), coalesce(r.help, 0)
              from b left join r using (building_id) order by b.building_id""",
                         {"scope": scope.code, "most": MOST_BUILDINGS + 1, "help": [t.value for t in NEEDS_HELP_FIRST]})
        found = [BuildingShape(bid, name, grid.strip(), floors or 1, outer_ring(json.loads(shape)), dict(houses),
                               people, helped) for bid, name, grid, floors, shape, houses, people, helped in rows]
        return found[:MOST_BUILDINGS], len(found) > MOST_BUILDINGS

    def parts(self, scope: Scope) -> list[PartPoint]:
        """The scope's urban parts (部件) as points, by id."""
        rows = self.rows("select thing_id, kind, state, ST_X(position), ST_Y(position) from things "
                         "where org_contains(%s, grid_code) order by thing_id limit 5000", (scope.code,))
        return [PartPoint(*row) for row in rows]


def outer_ring(geojson: dict) -> tuple[tuple[float, float], ...]:
    """A GeoJSON polygon's outer ring as (lon, lat) pairs, without the closing repeat."""
    ring = [(float(lon), float(lat)) for lon, lat, *_ in geojson["coordinates"][0]]
    if len(ring) > 1 and ring[0] == ring[-1]:
        ring = ring[:-1]
    return tuple(ring)


def to_metres(origin: tuple[float, float], point: tuple[float, float]) -> tuple[float, float]:
    """A (lon, lat) as metres east and north of `origin` (equirectangular about the origin: within a
    community, a few hundred metres, the error is far below a storey)."""
    lon0, lat0 = origin
    lon, lat = point
    return (math.radians(lon - lon0) * _EARTH_M * math.cos(math.radians(lat0)), math.radians(lat - lat0) * _EARTH_M)


def triangles(ring: list[tuple[float, float]]) -> list[tuple[int, int, int]]:
    """A simple polygon's triangles as indices into `ring` (constrained Delaunay: a concave L-shaped
    footprint gets no triangle outside it)."""
    if len(ring) < 3:
        return []
    index = {point: n for n, point in enumerate(ring)}
    polygon = Polygon(ring)
    if not polygon.is_valid or polygon.area == 0:
        return []
    found = []
    for triangle in shapely.get_parts(shapely.constrained_delaunay_triangles(polygon)):
        corners = [index.get(tuple(c)) for c in list(triangle.exterior.coords)[:3]]
        if None not in corners:
            found.append(tuple(corners))
    return found


def extrude(ring: list[tuple[float, float]], height: float, base: float = 0.0) -> Mesh:
    """A prism: the ring (metres) at `base` and at `base + height`, walls between, a roof on top."""
    n = len(ring)
    x = tuple(p[0] for p in ring) * 2
    y = tuple(p[1] for p in ring) * 2
    z = (base,) * n + (base + height,) * n
    faces: list[tuple[int, int, int]] = []
    for a in range(n):
        b = (a + 1) % n
        faces += [(a, b, n + b), (a, n + b, n + a)]
    faces += [(n + p, n + q, n + r) for p, q, r in triangles(list(ring))]
    return Mesh(x, y, z, tuple(f[0] for f in faces), tuple(f[1] for f in faces), tuple(f[2] for f in faces))


def flat(ring: list[tuple[float, float]], z: float = 0.0) -> Mesh:
    """A flat polygon (the community's ground) at height `z`."""
    faces = triangles(list(ring))
    return Mesh(tuple(p[0] for p in ring), tuple(p[1] for p in ring), (z,) * len(ring),
                tuple(f[0] for f in faces), tuple(f[1] for f in faces), tuple(f[2] for f in faces))


def building_mesh(building: BuildingShape, origin: tuple[float, float]) -> Mesh:
    """A building extruded by its floors (FLOOR_HEIGHT_M each) from its footprint, in metres."""
    return extrude([to_metres(origin, p) for p in building.ring], building.floors * FLOOR_HEIGHT_M)

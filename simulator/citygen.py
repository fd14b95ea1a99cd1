"""A deterministic demo city: `python -m simulator.citygen [--scale demo|big] [--seed N] [--out PATH]`.

The default lays one district on the real coordinates of Gulou District, Fuzhou: 4 streets,
20 communities, 150 grids, 600 members ("one grid, four members"), a few thousand sensors. `--scale
big` makes a six-district city of ~2,000 grids, ~8,000 members and ~200,000 sensors.

Each level is split by a Voronoi tessellation of its parent (seed points relaxed by Lloyd's
algorithm so cells are of similar size), clipped to the parent: the children tile the parent with
no gaps and no overlaps, and stay convex because the outline is. Children are numbered
north→south, west→east. The same seed gives the same file, byte for byte.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import shapely
from shapely.geometry import MultiPoint, Point, Polygon
from tqdm import tqdm

from core.city import City, Grid, GridKind, OrgUnit
from core.orgcodes import Level, child_code
from simulator import citynames
from simulator.citystock import stock_grid

# A convex outline of Gulou District, Fuzhou (WGS 84 lon, lat).
GULOU_OUTLINE = [(119.255, 26.128), (119.290, 26.136), (119.318, 26.125), (119.326, 26.100),
                 (119.316, 26.072), (119.285, 26.064), (119.258, 26.074), (119.248, 26.100)]
FUZHOU_DISTRICT_CODES = ["350102", "350103", "350104", "350105", "350111", "350112"]


@dataclass(frozen=True)
class Scale:
    districts: int
    streets_per_district: int
    communities_per_street: int
    grids: int                     # in all; spread over the communities
    household_meters_per_building: int
    outline_factor: float          # how much larger than Gulou the city's outline is


SCALES = {
    "demo": Scale(1, 4, 5, 150, 0, 1.0),
    "big": Scale(6, 6, 7, 2000, 14, 3.7),
}


def _outline(factor: float) -> Polygon:
    base = Polygon(GULOU_OUTLINE)
    return shapely.affinity.scale(base, xfact=factor, yfact=factor, origin="centroid") if factor != 1 else base


def _random_point_in(poly: Polygon, rng: random.Random) -> Point:
    minx, miny, maxx, maxy = poly.bounds
    while True:
        p = Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy))
        if poly.contains(p):
            return p


def _split(parent: Polygon, n: int, rng: random.Random, relax: int = 4) -> list[Polygon]:
    """Tile `parent` with n convex cells of similar area, in reading order (N→S, W→E)."""
    if n == 1:
        return [parent]
    points = [_random_point_in(parent, rng) for _ in range(n)]
    cells: list[Polygon] = []
    for _ in range(relax + 1):
        diagram = shapely.voronoi_polygons(MultiPoint(points), extend_to=parent)
        cells = [cell.intersection(parent) for cell in diagram.geoms]
        cells = [c for c in cells if not c.is_empty]
        points = [c.centroid for c in cells]
    return _reading_order(cells)


def _reading_order(cells: list[Polygon]) -> list[Polygon]:
    """Rows from north to south, each row from west to east."""
    per_row = max(1, round(math.sqrt(len(cells))))
    by_north = sorted(cells, key=lambda c: -c.centroid.y)
    rows = [by_north[i:i + per_row] for i in range(0, len(by_north), per_row)]
    return [c for row in rows for c in sorted(row, key=lambda c: c.centroid.x)]


def _grid_counts(total: int, parts: int, rng: random.Random) -> list[int]:
    """Split `total` grids over `parts` communities, each within ±25 % of the mean."""
    mean = total / parts
    weights = [rng.uniform(0.75, 1.25) for _ in range(parts)]
    counts = [max(1, int(mean * w / (sum(weights) / parts))) for w in weights]
    i = 0
    while sum(counts) != total:
        counts[i % parts] += 1 if sum(counts) < total else (-1 if counts[i % parts] > 1 else 0)
        i += 1
    return counts


def generate(scale: Scale = SCALES["demo"], seed: int = 20261121, progress: bool = False) -> City:
    rng = random.Random(seed)
    outline = _outline(scale.outline_factor)
    names = citynames.NamePicker(rng)
    district_cells = _split(outline, scale.districts, rng)
    districts = [OrgUnit(FUZHOU_DISTRICT_CODES[i], citynames.DISTRICTS[i], Level.DISTRICT, cell)
                 for i, cell in enumerate(district_cells)]
    city = City(name="Fuzhou" if scale.districts > 1 else "Gulou District, Fuzhou", seed=seed,
                districts=districts)
    communities: list[OrgUnit] = []
    for district in districts:
        for s, cell in enumerate(_split(district.boundary, scale.streets_per_district, rng), 1):
            street = OrgUnit(child_code(district.code, s), names.street(), Level.STREET, cell)
            city.streets.append(street)
            for c, ccell in enumerate(_split(cell, scale.communities_per_street, rng), 1):
                communities.append(OrgUnit(child_code(street.code, c), names.community(),
                                           Level.COMMUNITY, ccell))
    city.communities = communities
    counts = _grid_counts(scale.grids, len(communities), rng)
    bar = tqdm(total=scale.grids, desc="grids", unit="grid", disable=not progress, file=sys.stderr)
    for community, count in zip(communities, counts, strict=True):
        for g, gcell in enumerate(_split(community.boundary, count, rng), 1):
            code = child_code(community.code, g)
            kind = GridKind.UNIT if rng.random() < 0.1 else GridKind.RESIDENTIAL
            households = rng.randint(0, 40) if kind is GridKind.UNIT else rng.randint(250, 500)
            grid = Grid(code, f"{community.name} Grid {g}", kind, households,
                        round(households * rng.uniform(2.4, 2.9)), gcell)
            city.grids.append(grid)
            stock_grid(city, grid, rng, scale.household_meters_per_building)
            bar.update()
    bar.close()
    return city


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.citygen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="demo")
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--out", type=Path, default=Path("config/city-demo.json"))
    args = parser.parse_args(argv)
    city = generate(SCALES[args.scale], args.seed, progress=True)
    city.save(args.out)
    print(f"{args.out}: {len(city.districts)} district(s), {len(city.streets)} streets, "
          f"{len(city.communities)} communities, {len(city.grids)} grids, {len(city.buildings)} buildings, "
          f"{len(city.members)} members, {len(city.gateways)} gateways, {len(city.sensors)} sensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())

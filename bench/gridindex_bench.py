"""Point → grid lookups per second: `python -m bench.gridindex_bench [--scale demo|big]`.

Measured side by side in one run: the STRtree index one point at a time (`locate`), the same index
on batches of points (`locate_many`, the ingest path), and a naive scan over every grid polygon.
"""
from __future__ import annotations

import argparse
import platform
import random

import shapely
from shapely.geometry import Point

from bench.harness import per_second
from core.gridindex import GridIndex
from simulator.citygen import SCALES, generate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", choices=sorted(SCALES), default="demo")
    parser.add_argument("--points", type=int, default=50_000)
    args = parser.parse_args()
    city = generate(SCALES[args.scale])
    index = GridIndex(city.grids)
    rng = random.Random(1)
    minx, miny, maxx, maxy = shapely.union_all([d.boundary for d in city.districts]).bounds
    lons = [rng.uniform(minx, maxx) for _ in range(args.points)]
    lats = [rng.uniform(miny, maxy) for _ in range(args.points)]
    naive_n = min(args.points, 2000)
    geoms = [(g.code, g.boundary) for g in city.grids]
    shapely.prepare([g for _, g in geoms])

    def naive():
        for x, y in zip(lons[:naive_n], lats[:naive_n], strict=True):
            p = Point(x, y)
            next((code for code, geom in geoms if geom.intersects(p)), None)

    single = per_second(lambda: [index.locate(x, y) for x, y in zip(lons, lats, strict=True)], args.points)
    batch = per_second(lambda: [index.locate_many(lons[i:i + 1000], lats[i:i + 1000])
                                for i in range(0, args.points, 1000)], args.points)
    scan = per_second(naive, naive_n)
    print(f"point -> grid lookup, {len(city.grids)} grids, {args.points} random points "
          f"({platform.processor() or platform.machine()}, Python {platform.python_version()})")
    print(f"{'method':<34}{'lookups/s':>14}{'vs naive':>10}")
    for name, rate in (("STRtree, one point at a time", single), ("STRtree, batches of 1,000", batch),
                       ("naive scan of every polygon", scan)):
        print(f"{name:<34}{rate:>14,.0f}{rate / scan:>9.1f}x")


if __name__ == "__main__":
    main()

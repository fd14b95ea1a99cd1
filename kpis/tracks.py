"""A member's track, as the replay and the patrol indicators read it: pure functions over fixes.

* **stops**: a run of fixes that stays within `radius_m` of where it began for at least
  `min_stop_s` (Traccar's rule: a stop starts where the member stopped moving, and ends with the
  first fix outside the radius);
* **distance** walked (haversine between fixes, skipping jumps faster than `max_speed_mps`: a
  fix from a bad GPS, not a walk), time moving and time stopped;
* **coverage** of a grid: the H3 cells (resolution 11, ~25 m across) its area holds, and those the
  member's fixes inside it visited; the share walked is visited ÷ all, time in grid the sum of
  the gaps between consecutive fixes both inside it (gaps over `max_gap_s` count as absence).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import h3
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

COVERAGE_RESOLUTION = 11
MAX_SPEED_MPS = 15.0        # faster than a scooter in the lanes: a bad fix, not a walk
MAX_GAP_S = 300.0           # a gap this long: the terminal was off, not walking


@dataclass(frozen=True)
class Fix:
    time: datetime
    lat: float
    lon: float


@dataclass(frozen=True)
class Stop:
    start: datetime
    end: datetime
    lat: float
    lon: float
    fixes: int

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class Summary:
    fixes: int
    distance_m: float
    moving_s: float
    stopped_s: float
    stops: tuple[Stop, ...]


def metres(a_lat: float, a_lon: float, b_lat: float, b_lon: float) -> float:
    """Great-circle distance (haversine), in metres."""
    p1, p2 = math.radians(a_lat), math.radians(b_lat)
    dp, dl = p2 - p1, math.radians(b_lon - a_lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(min(1.0, h)))


def stops(fixes: list[Fix], min_stop_s: float = 180.0, radius_m: float = 30.0) -> list[Stop]:
    """The stops of a track (fixes in time order)."""
    found: list[Stop] = []
    i, n = 0, len(fixes)
    while i < n:
        anchor, j = fixes[i], i + 1
        while j < n and metres(anchor.lat, anchor.lon, fixes[j].lat, fixes[j].lon) <= radius_m:
            j += 1
        last = fixes[j - 1]
        if (last.time - anchor.time).total_seconds() >= min_stop_s:
            run = fixes[i:j]
            found.append(Stop(anchor.time, last.time, sum(f.lat for f in run) / len(run),
                              sum(f.lon for f in run) / len(run), len(run)))
            i = j
        else:
            i += 1
    return found


def summary(fixes: list[Fix], min_stop_s: float = 180.0, radius_m: float = 30.0) -> Summary:
    """Distance, time moving and stopped, and the stops of a track."""
    found = stops(fixes, min_stop_s, radius_m)
    stopped = sum(s.seconds for s in found)
    distance, active = 0.0, 0.0
    for a, b in zip(fixes, fixes[1:], strict=False):
        gap = (b.time - a.time).total_seconds()
        if gap <= 0 or gap > MAX_GAP_S:
            continue
        d = metres(a.lat, a.lon, b.lat, b.lon)
        if d / gap <= MAX_SPEED_MPS:
            distance += d
        active += gap
    return Summary(len(fixes), distance, max(0.0, active - stopped), stopped, tuple(found))


def grid_cells(boundary: BaseGeometry, resolution: int = COVERAGE_RESOLUTION) -> set[str]:
    """The H3 cells whose centres lie in the grid (never none: a tiny grid has its centre's cell)."""
    polygons = list(getattr(boundary, "geoms", [boundary]))
    cells: set[str] = set()
    for polygon in polygons:
        outer = [(lat, lon) for lon, lat in polygon.exterior.coords]
        holes = [[(lat, lon) for lon, lat in ring.coords] for ring in polygon.interiors]
        cells |= set(h3.polygon_to_cells(h3.LatLngPoly(outer, *holes), resolution))
    if not cells:
        c = boundary.representative_point()
        cells.add(h3.latlng_to_cell(c.y, c.x, resolution))
    return cells


@dataclass(frozen=True)
class Coverage:
    cells: int                  # the grid's
    visited: int                # of them, with a fix of the member inside the grid
    seconds_in_grid: float
    fixes_in_grid: int

    @property
    def share(self) -> float:
        return self.visited / self.cells if self.cells else 0.0

    @property
    def inspected(self) -> bool:
        """The grid was patrolled: the member was in it (the seeds: at least once a day)."""
        return self.fixes_in_grid > 0


def coverage(fixes: list[Fix], boundary: BaseGeometry, cells: set[str] | None = None,
             resolution: int = COVERAGE_RESOLUTION) -> tuple[Coverage, set[str]]:
    """How much of the grid the fixes covered, and the grid's cells they visited."""
    cells = grid_cells(boundary, resolution) if cells is None else cells
    lons, lats = np.array([f.lon for f in fixes]), np.array([f.lat for f in fixes])
    inside = shapely.contains_xy(boundary, lons, lats).tolist() if fixes else []
    visited = {h3.latlng_to_cell(f.lat, f.lon, resolution) for f, ok in zip(fixes, inside, strict=True) if ok} & cells
    seconds = 0.0
    for (a, a_in), (b, b_in) in zip(zip(fixes, inside, strict=True), zip(fixes[1:], inside[1:], strict=True),
                                    strict=False):
        gap = (b.time - a.time).total_seconds()
        if a_in and b_in and 0 < gap <= MAX_GAP_S:
            seconds += gap
    return Coverage(len(cells), len(visited), seconds, sum(inside)), visited


# --- a member's patrol of a day, folded window by window (kpis/patrol.py) ------------------------------

@dataclass(frozen=True)
class PatrolDay:
    """One member's day so far: what a patrol_daily row holds."""
    fixes: int = 0
    fixes_in_grid: int = 0
    cells: frozenset[str] = frozenset()         # the home grid's cells visited
    distance_m: float = 0.0
    seconds_in_grid: float = 0.0
    last: Fix | None = None                     # where the next window goes on from
    last_in_grid: bool = False


def extend(day: PatrolDay, fixes: list[Fix], in_grid: list[bool], grid_cells_: set[str],
           resolution: int = COVERAGE_RESOLUTION) -> PatrolDay:
    """The day after more fixes of it (in time order, all after `day.last`): the same sums as
    `summary` and `coverage` over the whole day, whatever the windows."""
    distance, seconds = day.distance_m, day.seconds_in_grid
    prev, prev_in = day.last, day.last_in_grid
    visited = set(day.cells)
    for f, inside in zip(fixes, in_grid, strict=True):
        if prev is not None:
            gap = (f.time - prev.time).total_seconds()
            if 0 < gap <= MAX_GAP_S:
                d = metres(prev.lat, prev.lon, f.lat, f.lon)
                if d / gap <= MAX_SPEED_MPS:
                    distance += d
                if inside and prev_in:
                    seconds += gap
        if inside:
            cell = h3.latlng_to_cell(f.lat, f.lon, resolution)
            if cell in grid_cells_:
                visited.add(cell)
        prev, prev_in = f, inside
    return PatrolDay(day.fixes + len(fixes), day.fixes_in_grid + sum(in_grid), frozenset(visited), distance, seconds,
                     prev, prev_in)

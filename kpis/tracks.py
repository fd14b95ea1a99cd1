"""A member's track, as the replay and the patrol indicators read it: pure functions over its fixes.

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
from datetime import datetime, timezone

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


@dataclass(frozen=True, eq=False)
class Track:
    """A track in columns (numpy, in time order): seconds since the epoch, latitudes, longitudes.
    What the replay reads a day of (17,280 fixes at 5 s) into, and computes on in whole arrays."""
    t: np.ndarray
    lat: np.ndarray
    lon: np.ndarray

    @classmethod
    def of(cls, fixes: list[Fix]) -> Track:
        return cls(np.array([f.time.timestamp() for f in fixes], dtype=float),
                   np.array([f.lat for f in fixes], dtype=float), np.array([f.lon for f in fixes], dtype=float))

    def __len__(self) -> int:
        return len(self.t)

    def time(self, i: int) -> datetime:
        return datetime.fromtimestamp(float(self.t[i]), timezone.utc)


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


EARTH_RADIUS_M = 6_371_008.8


def metres(a_lat: float, a_lon: float, b_lat: float, b_lon: float) -> float:
    """Great-circle distance (haversine), in metres."""
    p1, p2 = math.radians(a_lat), math.radians(b_lat)
    dp, dl = p2 - p1, math.radians(b_lon - a_lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, h)))


def metres_between(a_lat, a_lon, b_lat, b_lon) -> np.ndarray:
    """`metres` over arrays (either side may be one point)."""
    p1, p2 = np.radians(a_lat), np.radians(b_lat)
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(np.subtract(b_lon, a_lon)) / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.minimum(1.0, h)))


ROUNDS = 32                 # fixes after each one compared at once (a walk leaves 30 m in ~5)


def stops(track: Track, min_stop_s: float = 180.0, radius_m: float = 30.0) -> list[Stop]:
    """The stops of a track, by the rule above applied from the start of the day: a fix starts a
    stop if the fixes after it stay within the radius of it for `min_stop_s`; the stop runs to the
    first fix outside, and the next one is looked for after it.

    In arrays: first every fix is compared with the `ROUNDS` fixes after it, all at once, which
    settles most fixes (a walk leaves the radius; a stop reaches its minimum). Then, in order, only
    the fixes not settled as "no stop" are looked at, each scanning ahead in chunks that double; a
    stop found skips the fixes it holds (a day standing still is one scan, not one per fix)."""
    t, lat, lon, n = track.t, track.lat, track.lon, len(track)
    starts = np.full(n, min_stop_s <= 0)               # settled: a stop starts here
    moving = np.zeros(n, dtype=bool)                  # settled: it does not
    running = np.flatnonzero(~starts)
    for k in range(1, ROUNDS + 1):
        ended = running + k >= n                       # the day ends within the radius: not settled here
        running = running[~ended]
        outside = metres_between(lat[running], lon[running], lat[running + k], lon[running + k]) > radius_m
        moving[running[outside]] = True
        running = running[~outside]
        long_enough = t[running + k] - t[running] >= min_stop_s
        starts[running[long_enough]] = True
        running = running[~long_enough]
        if not running.size:
            break
    found: list[Stop] = []
    open_ = np.flatnonzero(~moving)
    i = 0
    while (at := int(np.searchsorted(open_, i))) < open_.size:
        i = int(open_[at])
        j = _first_outside(track, i, radius_m)
        if starts[i] or t[j - 1] - t[i] >= min_stop_s:
            found.append(Stop(track.time(i), track.time(j - 1), float(lat[i:j].mean()), float(lon[i:j].mean()),
                              j - i))
            i = j
        else:
            i += 1
    return found


def _first_outside(track: Track, i: int, radius_m: float) -> int:
    """The first fix after i farther than the radius from it (len(track) if none), looked for in
    chunks that double."""
    lo, size, n = i + 1, 64, len(track)
    while lo < n:
        hi = min(n, lo + size)
        far = np.flatnonzero(metres_between(track.lat[i], track.lon[i], track.lat[lo:hi], track.lon[lo:hi]) > radius_m)
        if far.size:
            return lo + int(far[0])
        lo, size = hi, size * 2
    return n


def summary(track: Track, min_stop_s: float = 180.0, radius_m: float = 30.0) -> Summary:
    """Distance, time moving and stopped, and the stops of a track."""
    found = stops(track, min_stop_s, radius_m)
    stopped = sum(s.seconds for s in found)
    gap = np.diff(track.t)
    step = metres_between(track.lat[:-1], track.lon[:-1], track.lat[1:], track.lon[1:])
    counted = (gap > 0) & (gap <= MAX_GAP_S)
    distance = float(step[counted & (step <= MAX_SPEED_MPS * gap)].sum())
    active = float(gap[counted].sum())
    return Summary(len(track), distance, max(0.0, active - stopped), stopped, tuple(found))


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


def coverage(track: Track, boundary: BaseGeometry, cells: set[str] | None = None,
             resolution: int = COVERAGE_RESOLUTION) -> tuple[Coverage, set[str]]:
    """How much of the grid the track covered, and the grid's cells it visited."""
    cells = grid_cells(boundary, resolution) if cells is None else cells
    inside = shapely.contains_xy(boundary, track.lon, track.lat) if len(track) else np.zeros(0, bool)
    visited = {h3.latlng_to_cell(la, lo, resolution)
               for la, lo in zip(track.lat[inside].tolist(), track.lon[inside].tolist(), strict=True)} & cells
    gap = np.diff(track.t)
    seconds = float(gap[inside[:-1] & inside[1:] & (gap > 0) & (gap <= MAX_GAP_S)].sum())
    return Coverage(len(cells), len(visited), seconds, int(inside.sum())), visited


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

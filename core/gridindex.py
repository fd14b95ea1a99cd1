"""Point → grid lookup over the grid polygons (shapely STRtree).

Borders: a point on the boundary shared by two grids belongs to the grid with the smaller code
(the one numbered first: further north or west), so every point inside the city maps to exactly
one grid. A point outside every grid maps to None. Floating-point slivers along shared edges (at
most ~1e-9 degrees, a tenth of a millimetre) are closed by a nearest-grid fallback.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import shapely
from shapely import STRtree

from core.city import Grid

SLIVER_DEGREES = 1e-9


class GridIndex:
    def __init__(self, grids: Iterable[Grid]) -> None:
        # sort by code so that "smallest code wins" is "smallest tree index wins"
        ordered = sorted(grids, key=lambda g: g.code)
        self.codes: list[str] = [g.code for g in ordered]
        self._geoms = np.array([g.boundary for g in ordered], dtype=object)
        shapely.prepare(self._geoms)
        self._tree = STRtree(self._geoms)

    def __len__(self) -> int:
        return len(self.codes)

    def locate(self, lon: float, lat: float) -> str | None:
        """The grid code at this point, or None outside every grid."""
        point = shapely.Point(lon, lat)
        hits = self._tree.query(point, predicate="intersects")
        if len(hits):
            return self.codes[int(hits.min())]
        return self._sliver_fallback(point)

    def _sliver_fallback(self, point) -> str | None:
        hits = self._tree.query_nearest(point, max_distance=SLIVER_DEGREES)
        return self.codes[int(np.min(hits))] if len(hits) else None

    def locate_many(self, lons: Sequence[float], lats: Sequence[float]) -> list[str | None]:
        """Vectorised `locate` for a batch of points (the ingest path)."""
        lons = np.asarray(lons, dtype=float)
        lats = np.asarray(lats, dtype=float)
        if lons.shape != lats.shape:
            raise ValueError("lons and lats differ in length")
        points = shapely.points(lons, lats)
        input_idx, tree_idx = self._tree.query(points, predicate="intersects")
        best = np.full(len(points), -1, dtype=np.int64)
        if len(input_idx):
            # for each point the smallest tree index among its hits
            order = np.lexsort((tree_idx, input_idx))
            first = np.unique(input_idx[order], return_index=True)[1]
            best[input_idx[order][first]] = tree_idx[order][first]
        result: list[str | None] = [self.codes[i] if i >= 0 else None for i in best.tolist()]
        for i in np.flatnonzero(best < 0).tolist():
            result[i] = self._sliver_fallback(points[i])
        return result

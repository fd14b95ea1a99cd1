"""What the screens' callbacks share: set once when the app is created."""
from __future__ import annotations

from dashboard.queries import Queries

QUERIES: Queries | None = None
TILE_URL: str | None = None


def queries() -> Queries:
    if QUERIES is None:
        raise RuntimeError("the dashboard app has not been created")
    return QUERIES

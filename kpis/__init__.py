"""The leaders' assessment: facts folded from the case events, rollups, indicators, reports."""

"""What the dispatcher's console reads besides the live state: today's duty roster and every
terminal's open case work (what the candidate search ranks by)."""
from __future__ import annotations

from datetime import datetime, timezone
from functools import cached_property

from database.reads import Reads
from dispatch import roster
from dispatch.candidates import OPEN_WORK
from dispatch.roster import RosterCache, RosterDay


class DispatchReads(Reads):
    @cached_property
    def _roster(self) -> RosterCache:
        return RosterCache()

    def roster_today(self, now: datetime | None = None) -> RosterDay:
        """Today's duty roster (dispatch.roster), read again once a minute at most."""
        return self._roster.today(now or datetime.now(timezone.utc),
                                  lambda day: roster.day_of(day, self.rows(roster.ROSTER_SQL, (day,))))

    def open_work(self) -> dict[str, list[str]]:
        """Every terminal's open case work (dispatch.candidates.OPEN_WORK): the states of its cases."""
        return dict(self.rows(OPEN_WORK, ()))

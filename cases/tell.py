"""After a commit, the screens are told: each changed case as a `case` change on the live bus
(telemetry.live), with what the screens draw of it (no terminal ids: the handler by name)."""
from __future__ import annotations

import logging

import redis

from cases.machine import Applied
from cases.model import Case
from core.city import City
from telemetry import live

log = logging.getLogger(__name__)


def case_change(case: Case, city: City) -> live.CaseChange:
    member = city.member_by_terminal.get(case.handler or "")
    return live.CaseChange(
        case_id=case.case_id, grid_code=case.grid_code, org_code=case.org_code, t=_t(case.opened_at),
        state=case.state.value, category=case.category, urgency=case.urgency.value, source=case.source.value,
        title=case.title, place=case.place, stage=case.stage.value if case.stage else None,
        deadline=_t(case.deadline), warn_at=_t(case.warn_at), escalation_level=case.escalation_level,
        handler_name=member.name if member else None, acknowledged=case.acknowledged_by is not None,
        closed_at=_t(case.closed_at), lon=case.lon, lat=case.lat,
        sos_member=case.source_key.removeprefix("sos:") if case.source_key and case.source.value == "sos" else None,
        unassigned=case.unassigned)


class Teller:
    """Puts the changed cases on the bus. Contained: the cases are stored, and a screen that
    misses an envelope sees the gap in the numbering and resyncs from the database."""

    def __init__(self, r: redis.Redis, city: City, producer: str = "cases") -> None:
        self.city = city
        self.bus = live.BusWriter(r, producer)

    def __call__(self, changed: list[Applied]) -> None:
        changes = [case_change(a.case, self.city) for a in changed]
        try:
            self.bus.publish(changes)
        except (redis.RedisError, OSError) as exc:
            self.bus.skip()
            log.warning("%d changed cases are stored, but the live bus could not be told: %s", len(changes), exc)


def _t(at) -> float | None:
    return at.timestamp() if at is not None else None

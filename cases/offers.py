"""Offers: every dispatch of a case is an offer to one member's terminal, which must accept it
within a time (per urgency), or it expires; a rejected or expired offer is followed by an offer to
the next candidate (dispatch.candidates), up to `tries` offers of the case, after which it waits in
the dispatch queue flagged unassigned (its escalation ladder goes on climbing meanwhile).

`bookkeep` keeps the `case_offers` rows in step with a case's events, in the caller's transaction
(cases.store.record calls it): a dispatch opens an offer (withdrawing any other open one), an
accept or a reject decides it, a return, refusal or suspension withdraws it. The engine's
`expire` and `follow` (cases/engine.py) do the rest.

Offers run out on a clock: whoever decides what has expired asks a `Clock` for the time (the engine
takes one; production passes none and runs on `wall_clock`), so a test moves time forward instead
of waiting it out.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from cases.model import Event
from config.settings import Settings

_WITHDRAWING = frozenset({"return", "refuse", "suspend"})

Clock = Callable[[], datetime]      # the time now, timezone-aware (UTC)


def wall_clock() -> datetime:
    """The real time: the clock production runs on."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class OfferPolicy:
    timeout_s: dict[str, float] = field(default_factory=lambda: {"urgent": 120.0, "normal": 180.0})
    tries: int = 3                  # offers of one case before it is flagged unassigned

    def expires(self, urgency: str, at: datetime) -> datetime:
        return at + timedelta(seconds=self.timeout_s.get(urgency, max(self.timeout_s.values())))

    @classmethod
    def from_settings(cls, settings: Settings) -> OfferPolicy:
        """The policy the settings name (GCC_DISPATCH_OFFER_*)."""
        return cls({"urgent": settings.dispatch_offer_timeout_urgent_s, "normal": settings.dispatch_offer_timeout_s},
                   settings.dispatch_offer_tries)


def bookkeep(cur, urgency: str, stage_seq: int, events: tuple[Event, ...] | list[Event], policy: OfferPolicy) -> None:
    for e in events:
        if e.command == "dispatch":
            cur.execute("update case_offers set outcome = 'withdrawn', decided_at = %s where case_id = %s "
                        "and outcome is null", (e.at, e.case_id))
            cur.execute("insert into case_offers (case_id, stage_seq, terminal_id, offered_by, rank, reason, "
                        "offered_at, expires_at) values (%s, %s, %s, %s, %s, %s, %s, %s)",
                        (e.case_id, stage_seq, e.detail["handler"], e.actor.name, e.detail.get("rank"),
                         e.detail.get("why"), e.at, policy.expires(urgency, e.at)))
        elif e.command in ("accept", "reject", "offer_expired"):
            outcome = {"accept": "accepted", "reject": "rejected", "offer_expired": "expired"}[e.command]
            cur.execute("update case_offers set outcome = %s, decided_at = %s where case_id = %s and outcome is null",
                        (outcome, e.at, e.case_id))
        elif e.command in _WITHDRAWING:
            cur.execute("update case_offers set outcome = 'withdrawn', decided_at = %s where case_id = %s "
                        "and outcome is null", (e.at, e.case_id))

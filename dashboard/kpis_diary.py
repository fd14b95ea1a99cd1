"""A leader rates the quality of a member's people's-feelings diary entry (民情日记), 1 to 5: a command
through dashboard/commands.py (authorized for the entry's grid, audited as `diary.rate`); rating it
again replaces the rating, and the audit row keeps the one before."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from core.catalogue import AuditAction
from core.roles import UserRole
from dashboard.authz import Identity
from dashboard.commands import Action, Commands, Refused, Target, Written

RATE_DIARY = Action(AuditAction.DIARY_RATE, frozenset({UserRole.LEADER, UserRole.ADMIN}))


@dataclass(frozen=True)
class RateDiary:
    action: ClassVar[Action] = RATE_DIARY
    terminal_id: str
    entry_id: str
    rating: int

    @property
    def target_key(self) -> str:
        return f"diary:{self.terminal_id}/{self.entry_id}"

    def locate(self, ctx: Commands) -> Target | None:
        row = ctx.one("select e.grid_code, e.category, e.text, r.rating from diary_entries e left join diary_ratings r "
                      "using (terminal_id, entry_id) where e.terminal_id = %s and e.entry_id = %s "
                      "order by e.time desc limit 1", (self.terminal_id, self.entry_id))
        if row is None or row["grid_code"] is None:
            return None
        member = ctx.city.member_by_terminal.get(self.terminal_id)
        who = member.name if member else self.terminal_id
        return Target(self.target_key, row["grid_code"].strip(), f"{who}: {row['text'][:40]}", row)

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        if not 1 <= int(self.rating) <= 5:
            raise Refused("a rating is 1 to 5")
        cur.execute("insert into diary_ratings (terminal_id, entry_id, rating, rated_by, rated_at) "
                    "values (%s, %s, %s, %s, %s) on conflict (terminal_id, entry_id) do update set "
                    "rating = excluded.rating, rated_by = excluded.rated_by, rated_at = excluded.rated_at",
                    (self.terminal_id, self.entry_id, int(self.rating), who.user, now))
        return Written({"rating": target.subject["rating"]}, {"rating": int(self.rating)})

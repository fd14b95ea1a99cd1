"""What the audit page and its export read of the audit trail (database.audit writes it): a
leader's filter (a period of local days, an action, an outcome, a part of the actor's name) within
their scope."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import ClassVar

from core.city import CITY_TZ
from core.orgcodes import Scope
from database.reads import Reads, equal, like_escape


class AuditReads(Reads):
    # --- the audit trail (leaders and admins; dashboard/pages/audit.py) ------------------------------
    AUDIT_COLUMNS = ("time", "actor", "roles", "action", "target", "scope_code", "outcome", "reason", "before",
                     "after", "source_address")

    def audit(self, scope: Scope, wanted: AuditFilter, limit: int) -> tuple[list[dict], int]:
        """The newest `limit` rows of the audit trail that match, within the scope, and how many
        match in all. A row belongs to the org unit of its target (or of the person, for logins);
        rows of no org unit (a failed login of an unknown name) only at the city's scope."""
        where, args = _audit_where(scope, wanted)
        rows = self.rows(f"select {', '.join(self.AUDIT_COLUMNS)} from audit_log where {where} "
                           "order by time desc, id desc limit %s", (*args, limit))
        total = self.rows(f"select count(*) from audit_log where {where}", args)[0][0]
        return [dict(zip(self.AUDIT_COLUMNS, row, strict=True)) for row in rows], total

    def audit_export(self, scope: Scope, wanted: AuditFilter):
        """Every matching row, oldest first (streamed: an export of a year is not held in memory)."""
        where, args = _audit_where(scope, wanted)
        yield from self._stream(f"select {', '.join(self.AUDIT_COLUMNS)} from audit_log where {where} "
                                "order by time, id", args, self.AUDIT_COLUMNS)


@dataclass(frozen=True)
class AuditFilter:
    """What of the audit trail a leader asks for: a period of local days, and optionally one
    action, one outcome, and a part of the actor's name."""
    first_day: date
    last_day: date                 # inclusive
    action: str | None = None
    outcome: str | None = None     # 'done' or 'refused'
    actor: str | None = None

    DEFAULT_DAYS: ClassVar[int] = 7
    MAX_DAYS: ClassVar[int] = 400

    @classmethod
    def from_params(cls, params: dict, today: date | None = None) -> AuditFilter:
        """From a page's controls or an export's query string; ValueError says what is wrong."""
        today = today or datetime.now(CITY_TZ).date()
        last = _day(params.get("to")) or today
        first = _day(params.get("from")) or last - timedelta(days=cls.DEFAULT_DAYS - 1)
        if first > last:
            raise ValueError(f"the period starts ({first}) after it ends ({last})")
        if (last - first).days >= cls.MAX_DAYS:
            raise ValueError(f"a period has at most {cls.MAX_DAYS} days")
        outcome = params.get("outcome") or None
        if outcome not in (None, "done", "refused"):
            raise ValueError(f"{outcome!r} is not an outcome (done or refused)")
        actor = (params.get("actor") or "").strip()[:64] or None
        return cls(first, last, params.get("action") or None, outcome, actor)

    def params(self) -> dict[str, str]:
        """As a query string's parameters (the export link)."""
        named = {"from": self.first_day.isoformat(), "to": self.last_day.isoformat(), "action": self.action,
                 "outcome": self.outcome, "actor": self.actor}
        return {k: v for k, v in named.items() if v}


def _day(value) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise ValueError(f"{value!r} is not a day (YYYY-MM-DD)") from None


def _audit_where(scope: Scope, wanted: AuditFilter) -> tuple[str, tuple]:
    start = datetime.combine(wanted.first_day, datetime.min.time(), CITY_TZ)
    end = datetime.combine(wanted.last_day + timedelta(days=1), datetime.min.time(), CITY_TZ)
    clauses, args = ["time >= %s", "time < %s"], [start, end]
    if scope.code:
        clauses.append("org_contains(%s, scope_code)")
        args.append(scope.code)
    equal(clauses, args, action=wanted.action, outcome=wanted.outcome)
    if wanted.actor:
        clauses.append("actor ilike %s")
        args.append("%" + like_escape(wanted.actor) + "%")
    return " and ".join(clauses), tuple(args)


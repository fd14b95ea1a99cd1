"""What the case screens read: the case list and its filter, a case's history, the open cases a
live page starts from, the rules (time limits, the working calendar) and the intake's held rows."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import ClassVar

from cases import store as case_store
from cases.intake import MAX_ATTEMPTS
from cases.model import FINISHED, Case, CheckAnswer, State, Verify, values
from cases.tell import case_change
from core.orgcodes import Scope
from database.reads import Reads, equal, like_escape
from telemetry import live


class CaseReads(Reads):
    def open_cases(self, scope: Scope, limit: int = 500) -> list[live.CaseChange]:
        """The open cases of the scope, as the bus carries them: SOS first, then urgent, then the
        nearest deadline (overdue first)."""
        rows = self.rows(f"select {', '.join(case_store.CASE_COLUMNS)} from cases "
                           "where state <> all(%s) and org_contains(%s, org_code) "
                           "order by source = 'sos' desc, urgency = 'urgent' desc, deadline nulls last limit %s",
                           (values(FINISHED), scope.code, limit))
        return [case_change(case_store.from_row(row), self.city) for row in rows]

    def cases(self, scope: Scope, wanted: CaseFilter, limit: int) -> tuple[list[Case], int]:
        """The cases of the scope that match, in the order asked for, and how many match in all."""
        where, args = _case_where(scope, wanted)
        rows = self.rows(f"{SELECT_CASES} where {where} order by {wanted.order_by} limit %s", (*args, limit))
        total = self.rows(f"select count(*) from cases where {where}", args)[0][0]
        return [case_store.from_row(row) for row in rows], total

    def cases_export(self, scope: Scope, wanted: CaseFilter):
        where, args = _case_where(scope, wanted)
        for row in self._stream(f"{SELECT_CASES} where {where} order by {wanted.order_by}", args,
                                case_store.CASE_COLUMNS):
            yield case_store.from_row(tuple(row.values()))

    def case_history(self, case_id: str) -> dict:
        """A case's events (oldest first), escalation steps, sources (the reports and alarms it was
        made of, with their photos) and the notices sent to terminals about it."""
        events = self.rows("select time, command, actor_kind, actor, roles, from_state, to_state, reason, detail "
                             "from case_events where case_id = %s order by id", (case_id,))
        steps = self.rows("select stage, level, org_code, step, repeat, due_at, fired_at from case_escalations "
                            "where case_id = %s order by fired_at, step, repeat", (case_id,))
        sources = self.rows(
            "select s.kind, s.key, s.linked, r.time, r.description, r.photo_ref, coalesce(r.photo_refs, '{}'), "
            f"r.address from case_sources s left join incident_reports r on {_SOURCE_REPORT} where s.case_id = %s "
            "order by s.time", (case_id,))
        notices = self.rows("select terminal_id, kind, time, sent_at from case_notices where case_id = %s "
                              "order by id", (case_id,))
        names = ("time", "command", "actor_kind", "actor", "roles", "from_state", "to_state", "reason", "detail")
        return {"events": [dict(zip(names, e, strict=True)) for e in events],
                "escalations": [dict(zip(("stage", "level", "org_code", "step", "repeat", "due_at", "fired_at"), r,
                                         strict=True)) for r in steps],
                "sources": [dict(zip(("kind", "key", "linked", "time", "description", "photo_ref", "photo_refs",
                                      "address"), r, strict=True)) for r in sources],
                "notices": [dict(zip(("terminal_id", "kind", "time", "sent_at"), r, strict=True)) for r in notices]}

    def case_photos(self, case_id: str) -> list[dict]:
        """The photos of a case, in the order they came: its reports' (`stage` "report", before) and
        those of the members' feedback and verification ("feedback", "verify": after), each
        `{"ref", "stage", "time"}`; a ref named twice is listed once, where it first came."""
        return case_photos(self.case_history(case_id))

    def photo(self, scope: Scope, ref: str, thumb: bool = False) -> bytes | None:
        """A stored photo's JPEG (or its thumbnail) if the scope covers a report or a case that names
        it (the report's grid, the case's org unit, as the case's page is authorized); None when
        there is no such photo or nothing in the scope names it (the caller cannot tell which)."""
        found = self.rows(f"select {'thumb' if thumb else 'bytes'} from photos p where p.ref = %(ref)s and ("
                          f"exists (select 1 from incident_reports r where {_NAMES_REF} "
                          "and org_contains(%(scope)s, r.grid_code)) "
                          f"or exists (select 1 from incident_reports r join case_sources s on {_REPORT_SOURCE} "
                          f"join cases c on c.case_id = s.case_id where {_NAMES_REF} "
                          "and org_contains(%(scope)s, c.org_code)) "
                          "or exists (select 1 from case_events e join cases c on c.case_id = e.case_id "
                          f"where {_EVENT_NAMES_REF} and org_contains(%(scope)s, c.org_code)))",
                          {"ref": ref, "scope": scope.code})
        return bytes(found[0][0]) if found else None

    # --- the rules (the rules page) -----------------------------------------------------------------
    def limit_versions(self) -> list[dict]:
        rows = self.rows("select version, min(created_at), min(created_by), count(*) from time_limits "
                           "group by version order by version desc", ())
        return [dict(zip(("version", "created_at", "created_by", "rows"), r, strict=True)) for r in rows]

    def limit_rows(self, version: int) -> list[tuple[str, str, str, float, str]]:
        """(category, stage, urgency, amount, unit) of one version."""
        return self.rows("select category, stage, urgency, amount, unit from time_limits where version = %s",
                           (version,))

    def calendar_sources(self, years: list[int]) -> dict[int, dict[str, int]]:
        rows = self.rows("select extract(year from day)::int, source, count(*) from work_calendar "
                           "where extract(year from day)::int = any(%s) group by 1, 2", (years,))
        out: dict[int, dict[str, int]] = {y: {} for y in years}
        for year, source, n in rows:
            out[year][source] = n
        return out

    def calendar_exceptions(self, first: date, last: date) -> list[dict]:
        """The days that are not what the weekday says (holidays on weekdays, make-up working
        weekends) and every admin override, in the period."""
        rows = self.rows("select day, workday, name, source, updated_by, updated_at from work_calendar "
                           "where day between %s and %s and (source = 'admin' or workday <> "
                           "(extract(isodow from day) < 6)) order by day", (first, last))
        return [dict(zip(("day", "workday", "name", "source", "updated_by", "updated_at"), r, strict=True))
                for r in rows]

    def held_inbox(self, limit: int = 100) -> list[dict]:
        """The cases engine's inbox rows it gave up on (cases.intake.MAX_ATTEMPTS), kept as evidence."""
        rows = self.rows("select id, kind, key, time, attempts, last_error from case_inbox where attempts >= %s "
                           "order by id desc limit %s", (MAX_ATTEMPTS, limit))
        return [dict(zip(("id", "kind", "key", "time", "attempts", "last_error"), r, strict=True)) for r in rows]


# a case's source row -> its incident report (`s`: case_sources, `r`: incident_reports), either way
_SOURCE_REPORT = ("s.kind = 'report' and r.terminal_id = split_part(s.key, '/', 1) "
                  "and r.report_id = substr(s.key, length(split_part(s.key, '/', 1)) + 2)")
_REPORT_SOURCE = "s.kind = 'report' and s.key = r.terminal_id || '/' || r.report_id"
# an incident report `r` / a case event `e` names the photo %(ref)s (indexes of migration 0029)
_NAMES_REF = "(r.photo_refs @> array[%(ref)s]::text[] or r.photo_ref = %(ref)s)"
_EVENT_NAMES_REF = "e.detail -> 'photo_refs' ? %(ref)s"
# before (the report's, and a member's check on site: 紧急核实), after (the handler's, the verifier's)
PHOTO_STAGES = ("report", "check", "feedback", "verify")
_EVENT_STAGES = {Verify.name: "verify", CheckAnswer.name: "check"}   # any other event's photos: feedback


def case_photos(history: dict) -> list[dict]:
    """The photos of a case's history (CaseReads.case_history): see CaseReads.case_photos."""
    found: dict[str, dict] = {}
    for s in history["sources"]:
        for ref in ([s["photo_ref"]] if s.get("photo_ref") else []) + list(s.get("photo_refs") or ()):
            found.setdefault(ref, {"ref": ref, "stage": "report", "time": s["time"]})
    for e in history["events"]:
        for ref in (e["detail"] or {}).get("photo_refs") or ():
            stage = _EVENT_STAGES.get(e["command"], "feedback")
            found.setdefault(ref, {"ref": ref, "stage": stage, "time": e["time"]})
    return list(found.values())


SELECT_CASES = f"select {', '.join(case_store.CASE_COLUMNS)} from cases"

CASE_STATUSES = ("open", "overdue", "escalated", "unacknowledged", "finished", "all")   # or one state's value
CASE_SORTS = {
    "deadline": "deadline nulls last, opened_at",
    "urgency": "source = 'sos' desc, urgency = 'urgent' desc, deadline nulls last",
    "opened": "opened_at desc",
    "escalation": "array_position(array['district', 'street', 'community', 'grid'], escalation_level) nulls last, "
                  "deadline nulls last",
    "state": "state, deadline nulls last",
    "category": "category, deadline nulls last",
}


@dataclass(frozen=True)
class CaseFilter:
    """What of the cases a dispatcher or leader asks for: open ones (or overdue, escalated, …, or
    those finished in the period), of a category and a source, matching a text, sorted."""
    status: str = "open"
    category: str | None = None
    source: str | None = None
    text: str | None = None        # a case number, or part of its title or place
    sort: str = "deadline"
    days: int = 30                 # finished / all: opened in the last `days` days

    MAX_DAYS: ClassVar[int] = 400

    @classmethod
    def from_params(cls, params: dict) -> CaseFilter:
        """From the page's controls or an export's query string; ValueError says what is wrong."""
        states = {s.value for s in State}
        status = params.get("status") or "open"
        if status not in CASE_STATUSES and status not in states:
            raise ValueError(f"{status!r} is not a status ({', '.join(CASE_STATUSES)}, or a state)")
        sort = params.get("sort") or "deadline"
        if sort not in CASE_SORTS:
            raise ValueError(f"{sort!r} is not a sort order ({', '.join(CASE_SORTS)})")
        try:
            days = int(params.get("days") or 30)
        except ValueError:
            raise ValueError(f"{params.get('days')!r} is not a number of days") from None
        if not 1 <= days <= cls.MAX_DAYS:
            raise ValueError(f"a period has 1 to {cls.MAX_DAYS} days")
        text = (params.get("text") or "").strip()[:64] or None
        return cls(status, params.get("category") or None, params.get("source") or None, text, sort, days)

    @property
    def order_by(self) -> str:
        return CASE_SORTS[self.sort]

    def params(self) -> dict[str, str]:
        named = {"status": self.status, "category": self.category, "source": self.source, "text": self.text,
                 "sort": self.sort, "days": str(self.days) if self.days != 30 else None}
        return {k: v for k, v in named.items() if v}


def _case_where(scope: Scope, wanted: CaseFilter) -> tuple[str, tuple]:
    clauses, args = [], []
    if scope.code:
        clauses.append("org_contains(%s, org_code)")
        args.append(scope.code)
    status = wanted.status
    if status in ("open", "overdue", "escalated", "unacknowledged"):
        clauses.append("state <> all(%s)")
        args.append(values(FINISHED))
        if status == "overdue":
            clauses.append("deadline < now()")
        elif status == "escalated":
            clauses.append("escalation_level is not null and escalation_level <> 'grid'")
        elif status == "unacknowledged":
            clauses.append("source = 'sos' and acknowledged_by is null")
    else:
        clauses.append("opened_at >= now() - %s * interval '1 day'")
        args.append(wanted.days)
        if status == "finished":
            clauses.append("state = any(%s)")
            args.append(values(FINISHED))
        elif status != "all":
            clauses.append("state = %s")
            args.append(status)
    equal(clauses, args, category=wanted.category, source=wanted.source)
    if wanted.text:
        clauses.append("(case_id ilike %s or title ilike %s or place ilike %s)")
        args.extend([like_escape(wanted.text) + "%"] + ["%" + like_escape(wanted.text) + "%"] * 2)
    return " and ".join(clauses) or "true", tuple(args)

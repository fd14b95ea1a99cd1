"""Cases in PostgreSQL (database/migrations/0009_cases.sql): the rules read from their tables, a case
read (locked) and written back with its events, each on the caller's cursor, in the caller's
transaction, so a change and its event row commit together or not at all."""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time
from typing import Any

import orjson
from psycopg2.extras import execute_values

from cases import calendar as work_calendar
from cases.calendar import WorkCalendar
from cases.escalation import DEFAULT_LADDERS, Position, due
from cases.limits import Limit, LimitRow, LimitTable, Stage, Unit, Urgency, default_rows
from cases.machine import Applied, Rules
from cases.model import FINISHED, Case, Event, Extension, Source, State, values
from cases.notices import NoticeRow, Recipients, notices_for
from cases.offers import OfferPolicy, bookkeep

CASE_COLUMNS = ("case_id", "category", "urgency", "source", "grid_code", "org_code", "state", "opened_at", "title",
                "place", "lat", "lon", "limits_version", "stage_seq", "stage_started_at", "deadline_original",
                "deadline", "warn_at", "handler", "suspended_from", "pending_extension", "rework_count",
                "return_count", "extension_count", "reopen_count", "escalation_level", "acknowledged_by", "rating",
                "closed_at", "source_key", "unassigned", "checkers")
_SELECT = f"select {', '.join(CASE_COLUMNS)} from cases"


# --- the rules ----------------------------------------------------------------------------------------

def seed(cur, years: list[int], actor: str) -> tuple[int, int]:
    """The default time limits (version 1, if there is no version yet) and the calendar's days of
    `years` that are not there yet. Returns (limit rows added, days added). Safe to run again."""
    cur.execute("select count(*) from time_limits")
    limits = 0
    if cur.fetchone()[0] == 0:
        for row in default_rows():
            cur.execute("insert into time_limits (version, category, stage, urgency, amount, unit, created_by) "
                        "values (1, %s, %s, %s, %s, %s, %s)",
                        (row.category, row.stage.value, row.urgency, row.limit.amount, row.limit.unit.value, actor))
            limits += 1
    days = work_calendar.library_years(years)
    cur.execute("insert into work_calendar (day, workday, name, source, updated_by) "
                "select * from unnest(%s::date[], %s::boolean[], %s::text[], %s::text[], %s::text[]) "
                "on conflict (day) do nothing",
                ([d.day for d in days], [d.workday for d in days], [d.name for d in days],
                 [d.source.value for d in days], [actor] * len(days)))
    return limits, cur.rowcount


def load_rules(cur, hours: tuple[tuple[time, time], ...] = work_calendar.DEFAULT_HOURS,
               warn_fraction: float = 0.8, time_scale: float = 1.0) -> Rules:
    """Every version of the time limits, and the calendar's days (the table's days override the
    libraries)."""
    cur.execute("select version, category, stage, urgency, amount, unit from time_limits")
    versions: dict[int, list[LimitRow]] = {}
    for version, category, stage, urgency, amount, unit in cur.fetchall():
        versions.setdefault(version, []).append(LimitRow(category, Stage(stage), urgency, Limit(amount, Unit(unit))))
    if not versions:
        raise RuntimeError("no time limits in the database: run `python -m casework seed`")
    cur.execute("select day, workday from work_calendar")
    overrides: dict[date, bool] = dict(cur.fetchall())
    calendar = (WorkCalendar(overrides, hours) if time_scale == 1.0
                else work_calendar.ScaledCalendar(overrides, hours, time_scale=time_scale))
    return Rules({v: LimitTable.of(v, rows) for v, rows in versions.items()}, calendar, warn_fraction)


# --- cases ----------------------------------------------------------------------------------------------

def next_case_id(cur, now: datetime) -> str:
    cur.execute("select nextval('case_numbers')")
    return f"C{now.astimezone(work_calendar.CITY_TZ):%Y%m%d}-{cur.fetchone()[0]:06d}"


def load(cur, case_id: str, lock: bool = True) -> Case | None:
    cur.execute(f"{_SELECT} where case_id = %s{' for update' if lock else ''}", (case_id,))
    row = cur.fetchone()
    return from_row(row) if row else None


def open_for_source(cur, source_key: str, lock: bool = True) -> Case | None:
    """The open case made of this source (one per device and alarm type, one per SOS terminal)."""
    cur.execute(f"{_SELECT} where source_key = %s and state <> all(%s){' for update' if lock else ''}",
                (source_key, values(FINISHED)))
    row = cur.fetchone()
    return from_row(row) if row else None


def insert(cur, case: Case, rules: Rules, source_key: str | None = None) -> None:
    """A new case, with the first step of its escalation ladder scheduled."""
    position = Position(case.stage_seq)
    if source_key is not None:
        case = replace(case, source_key=source_key)
    columns = [*CASE_COLUMNS, "ladder_seq", "ladder_step", "ladder_repeat", "next_escalation_at"]
    cur.execute(f"insert into cases ({', '.join(columns)}) values ({', '.join(['%s'] * len(columns))})",
                (*to_row(case), *_ladder(position), next_escalation(case, position, rules)))
    cur.execute("select pg_notify('case_changed', '')")


def save(cur, case: Case, rules: Rules, position: Position | None = None, notify: bool = True) -> None:
    """Write the case's changed state back (the row was loaded `for update` in this transaction),
    and where its escalation ladder goes on: from `position` (the engine's), or where it was, or
    from the first step when a new stage clock started."""
    if position is None:
        position = ladder_position(cur, case.case_id)
    if position.stage_seq != case.stage_seq:
        position = Position(case.stage_seq)
    names = CASE_COLUMNS[1:]
    cur.execute(f"update cases set {', '.join(f'{n} = %s' for n in names)}, ladder_seq = %s, ladder_step = %s, "
                "ladder_repeat = %s, next_escalation_at = %s, updated_at = now() where case_id = %s",
                (*to_row(case)[1:], *_ladder(position), next_escalation(case, position, rules), case.case_id))
    if notify:                  # the engine: its next step may now be earlier (the engine's own saves need not)
        cur.execute("select pg_notify('case_changed', '')")


def ladder_position(cur, case_id: str) -> Position:
    cur.execute("select ladder_seq, ladder_step, ladder_repeat from cases where case_id = %s", (case_id,))
    return Position(*cur.fetchone())


def next_escalation(case: Case, position: Position, rules: Rules) -> datetime | None:
    """When the case's next ladder step falls due (None: no clock runs, or the ladder is done)."""
    ladder = ladder_for(case)
    if not ladder:
        return None
    return due(case, ladder, position, datetime.min.replace(tzinfo=case.opened_at.tzinfo), rules.calendar).next_at


def ladder_for(case: Case):
    return DEFAULT_LADDERS.get(case.stage) if case.stage is not None else None


def _ladder(position: Position) -> tuple[int, int, int]:
    return position.stage_seq, position.step, position.repeat


def add_events(cur, events: tuple[Event, ...] | list[Event]) -> None:
    """The events, in one statement."""
    if not events:
        return
    execute_values(cur, "insert into case_events (case_id, time, command, actor_kind, actor, roles, from_state, "
                        "to_state, reason, detail) values %s",
                   [(e.case_id, e.at, e.command, e.actor.kind.value, e.actor.name, sorted(e.actor.roles),
                     e.from_state.value if e.from_state else None, e.to_state.value, e.reason,
                     orjson.dumps(e.detail, default=str).decode()) for e in events], page_size=1000)


def add_notices(cur, rows: list[NoticeRow]) -> None:
    """The case notices to send (the outbox: cases/notifier.py publishes them), in one statement."""
    if rows:
        execute_values(cur, "insert into case_notices (case_id, terminal_id, kind, time, body) values %s",
                       [(n.case_id, n.terminal_id, n.kind.value, n.time, n.body.decode()) for n in rows],
                       page_size=1000)


def record(cur, changed: list[Applied] | tuple[Applied, ...], recipients: Recipients,
           policy: OfferPolicy = OfferPolicy()) -> None:
    """The events of the changed cases, the notices they bring to terminals and the offers they
    open or decide, in the caller's transaction (the case rows are saved already)."""
    add_events(cur, [e for a in changed for e in a.events])
    add_notices(cur, [n for a in changed for n in notices_for(a.case, a.events, recipients)])
    for a in changed:
        bookkeep(cur, a.case.urgency.value, a.case.stage_seq, a.events, policy)


def audit_refusal(cur, actor_name: str, roles: list[str], action: str, target: str, scope_code: str | None,
                  reason: str) -> None:
    """A refused command from outside the screens (a terminal's case update): an audit-trail row,
    as dashboard/commands.py writes them."""
    cur.execute("insert into audit_log (actor, roles, action, target, scope_code, outcome, reason) "
                "values (%s, %s, %s, %s, %s, 'refused', %s)", (actor_name, roles, action, target, scope_code, reason))


def link_source(cur, kind: str, key: str, case_id: str, at: datetime, linked: str) -> bool:
    """Record that a report, alarm or SOS went into a case (False: it had been linked already)."""
    cur.execute("insert into case_sources (kind, key, case_id, time, linked) values (%s, %s, %s, %s, %s) "
                "on conflict (kind, key) do nothing", (kind, key, case_id, at, linked))
    return cur.rowcount == 1


def to_row(case: Case) -> tuple:
    ext = case.pending_extension
    pending = None if ext is None else orjson.dumps({
        "amount": ext.limit.amount, "unit": ext.limit.unit.value, "reason": ext.reason, "asked_by": ext.asked_by,
        "asked_at": ext.asked_at.isoformat()}).decode()
    values: dict[str, Any] = {**case.__dict__, "urgency": case.urgency.value, "source": case.source.value,
                              "state": case.state.value, "pending_extension": pending,
                              "checkers": list(case.checkers),
                              "suspended_from": case.suspended_from.value if case.suspended_from else None}
    return tuple(values[c] for c in CASE_COLUMNS)


def from_row(row: tuple) -> Case:
    values = dict(zip(CASE_COLUMNS, row, strict=True))
    pending = values["pending_extension"]
    if pending is not None:
        values["pending_extension"] = Extension(Limit(pending["amount"], Unit(pending["unit"])), pending["reason"],
                                                pending["asked_by"], datetime.fromisoformat(pending["asked_at"]))
    values.update(urgency=Urgency(values["urgency"]), source=Source(values["source"]), state=State(values["state"]),
                  suspended_from=State(values["suspended_from"]) if values["suspended_from"] else None,
                  grid_code=values["grid_code"].strip() if values["grid_code"] else None,
                  checkers=tuple(values["checkers"] or ()))
    return Case(**values)

"""The intake: reports, alarms and SOS statuses the ingest stored become cases.

The ingest's own transaction adds an inbox row for each (database triggers, migration 0009), so none
is missed; the intake takes rows off with `FOR UPDATE SKIP LOCKED` (two engines never take the same
row) and, in the same transaction, opens the case, links the source and writes the events.

- a report opens a case, or merges into an open case of the same category within `merge_metres`
  and `merge_minutes` (the link is kept);
- a raised alarm at or above `alarm_min_severity` opens a case, one open case per device and alarm
  type (ThingsBoard's rule): a raise while it is open is linked to it; a clear is an event on the
  case, which stays open until a person verifies the work;
- an SOS opens an urgent case at once (registered), one open per terminal;
- a terminal's case update (accept, feedback, verification, …) is applied as that member, or
  refused with the reason in the audit trail (not the handler, not a supervisor of the grid, the
  wrong state): it changes nothing then;
- a terminal's check on site (紧急核实, telemetry/kinds/alarm_check.py) goes on the case it names, or
  its alarm's case, as a `check` event when that terminal was asked (else refused and audited, as
  an update is); a check of an alarm that made no case is skipped (it stays on the alarm's record).
A row that fails is kept with its error and tried again, at most `MAX_ATTEMPTS` times; then it stays
as evidence and is counted (`held`), never silently dropped.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cases import store
from cases.checks import case_of_answer
from cases.limits import SOS_CATEGORY, Limit, Urgency
from cases.machine import Applied, Refusal, Rules, apply, open_case
from cases.model import (
    OPEN,
    Accept,
    Actor,
    ActorKind,
    CheckAnswer,
    Command,
    Event,
    Feedback,
    Reject,
    RequestExtension,
    Source,
    Start,
    Verify,
)
from cases.notices import Recipients
from core.catalogue import ALARM_TYPE_LABELS, INCIDENT_CATEGORIES, AuditAction, Severity
from core.city import City
from core.roles import ROLE_LABELS

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3
INTAKE = Actor.system("intake")
_OPEN_STATES = sorted(s.value for s in OPEN)


@dataclass(frozen=True)
class IntakeSettings:
    alarm_min_severity: int = Severity.HIGH     # below: the alarm is on the wall, not a case
    merge_metres: float = 50.0
    merge_minutes: float = 30.0


@dataclass
class Taken:
    """What one pass did: the cases changed (for the live bus), and the counts."""
    changed: list[Applied] = field(default_factory=list)
    rows: int = 0
    opened: int = 0
    merged: int = 0                  # reports merged into an open case nearby
    linked: int = 0                  # an alarm raised again or cleared, an SOS again: on its open case
    skipped: int = 0                 # below the alarm severity, or a clear of no open case
    applied: int = 0                 # terminals' case updates applied
    refused: int = 0                 # ... refused (audited)
    failed: int = 0
    held: int = 0                    # failed MAX_ATTEMPTS times: kept, not tried again


class Intake:
    def __init__(self, city: City, settings: IntakeSettings | None = None) -> None:
        self.city = city
        self.settings = settings or IntakeSettings()
        self.recipients = Recipients(city)        # who hears of a change (cases.notices)

    def take(self, conn, rules: Rules, now: datetime, limit: int = 200) -> Taken:
        """One transaction: up to `limit` inbox rows, each in a savepoint of its own."""
        taken = Taken()
        with conn, conn.cursor() as cur:
            cur.execute("select id, kind, key, time from case_inbox where attempts < %s order by id "
                        "for update skip locked limit %s", (MAX_ATTEMPTS, limit))
            rows = cur.fetchall()
            done = []
            for row_id, kind, key, at in rows:
                taken.rows += 1
                cur.execute("savepoint intake_row")
                try:
                    outcome = getattr(self, f"_{kind}")(cur, key, at, now, rules)
                except Exception as exc:           # contained: the row is kept with its error, the rest go on
                    cur.execute("rollback to savepoint intake_row")
                    cur.execute("update case_inbox set attempts = attempts + 1, last_error = %s where id = %s "
                                "returning attempts", (f"{type(exc).__name__}: {exc}"[:500], row_id))
                    attempts = cur.fetchone()[0]
                    taken.failed += 1
                    taken.held += attempts >= MAX_ATTEMPTS
                    log.error("intake of %s %s failed (attempt %d of %d): %s", kind, key, attempts, MAX_ATTEMPTS,
                              exc, exc_info=attempts >= MAX_ATTEMPTS)
                    continue
                cur.execute("release savepoint intake_row")
                done.append(row_id)
                self._count(taken, outcome)
            if done:
                cur.execute("delete from case_inbox where id = any(%s)", (done,))
        return taken

    @staticmethod
    def _count(taken: Taken, outcome: tuple[str, Applied | None]) -> None:
        what, applied = outcome
        if applied is not None:
            taken.changed.append(applied)
        taken.opened += what == "opened"
        taken.merged += what == "merged"
        taken.linked += what == "linked"
        taken.skipped += what == "skipped"
        taken.applied += what == "applied"
        taken.refused += what == "refused"

    # --- the kinds ----------------------------------------------------------------------------------
    def _report(self, cur, key: str, at: datetime, now: datetime, rules: Rules):
        terminal_id, report_id = key.split("/", 1)
        cur.execute("select category, severity, lat, lon, address, grid_code from incident_reports "
                    "where terminal_id = %s and report_id = %s and time = %s", (terminal_id, report_id, at))
        row = cur.fetchone()
        if row is None:
            raise LookupError(f"no report {key} at {at}")
        category, severity, lat, lon, address, grid_code = row
        grid_code = grid_code.strip() if grid_code else None
        near = self._mergeable(cur, category, lat, lon, at)
        if near is not None:
            store.link_source(cur, "report", key, near.case_id, at, "merged")
            event = Event(near.case_id, now, "merge", INTAKE, near.state, near.state, None,
                          {"report": key, "terminal_id": terminal_id, "reported_at": at.isoformat()})
            store.add_events(cur, [event])
            return "merged", Applied(near, (event,))
        label = INCIDENT_CATEGORIES[category].label if category in INCIDENT_CATEGORIES else category
        place = address or (self.city.org_name(grid_code) if grid_code else "")
        return self._open(cur, now, rules, category, Urgency.of(severity), Source.REPORT, grid_code, str(label),
                          place, ("report", key, f"report:{key}"), lat, lon,
                          {"terminal_id": terminal_id, "report_id": report_id, "reported_at": at.isoformat()})

    def _alarm(self, cur, key: str, at: datetime, now: datetime, rules: Rules):
        sensor_id, alarm_id, state = key.rsplit("/", 2)
        cur.execute("select a.alarm_type, a.severity, a.building_id, a.grid_code, s.lat, s.lon from device_alarms a "
                    "left join sensors s using (sensor_id) where a.sensor_id = %s and a.alarm_id = %s "
                    "and a.state = %s and a.time = %s", (sensor_id, alarm_id, state, at))
        row = cur.fetchone()
        if row is None:
            raise LookupError(f"no alarm {key} at {at}")
        alarm_type, severity, building_id, grid_code, lat, lon = row
        grid_code = grid_code.strip() if grid_code else None
        source_key = f"alarm:{sensor_id}/{alarm_type}"
        existing = store.open_for_source(cur, source_key)
        detail = {"sensor_id": sensor_id, "alarm_id": alarm_id, "severity": severity, "at": at.isoformat()}
        if existing is not None:
            linked = "cleared" if state == "cleared" else "raised_again"
            command = "device_cleared" if state == "cleared" else "raised_again"
            if not store.link_source(cur, "alarm", key, existing.case_id, at, linked):
                return "skipped", None
            event = Event(existing.case_id, now, command, INTAKE, existing.state, existing.state, None, detail)
            store.add_events(cur, [event])
            return "linked", Applied(existing, (event,))
        if state == "cleared" or severity < self.settings.alarm_min_severity:
            return "skipped", None
        label = ALARM_TYPE_LABELS.get(alarm_type, alarm_type)
        return self._open(cur, now, rules, alarm_type, Urgency.of(severity), Source.ALARM, grid_code, str(label),
                          self._building(building_id, grid_code), ("alarm", key, source_key), lat, lon, detail)

    def _sos(self, cur, key: str, at: datetime, now: datetime, rules: Rules):
        terminal_id = key
        source_key = f"sos:{terminal_id}"
        link_key = f"{terminal_id}/{at.isoformat()}"
        existing = store.open_for_source(cur, source_key)
        if existing is not None:
            store.link_source(cur, "sos", link_key, existing.case_id, at, "raised_again")
            return "linked", None
        member = self.city.member_by_terminal.get(terminal_id)
        cur.execute("select grid_code from terminal_status where terminal_id = %s and time = %s", (terminal_id, at))
        row = cur.fetchone()
        grid_code = (row[0].strip() if row and row[0] else None) or (member.grid_code if member else None)
        who = f"{member.name} · {ROLE_LABELS[member.role]}" if member else terminal_id
        cur.execute("select lat, lon from positions where terminal_id = %s order by time desc limit 1", (terminal_id,))
        position = cur.fetchone() or (None, None)
        return self._open(cur, now, rules, SOS_CATEGORY, Urgency.URGENT, Source.SOS, grid_code, f"SOS · {who}",
                          self.city.org_name(grid_code) if grid_code else "", ("sos", link_key, source_key),
                          *position, {"terminal_id": terminal_id, "at": at.isoformat()})

    def _update(self, cur, key: str, at: datetime, now: datetime, rules: Rules):
        """A terminal's work on a case: applied as that member, or refused with the reason (audited)."""
        terminal_id, case_id, action = key.split("/")
        cur.execute("select note, reason, photo_refs, extension from case_updates where terminal_id = %s and "
                    "case_id = %s and action = %s and time = %s", (terminal_id, case_id, action, at))
        row = cur.fetchone()
        if row is None:
            raise LookupError(f"no case update {key} at {at}")
        note, reason, photos, extension = row
        command = _command(action, note or "", reason or "", tuple(photos or ()), extension)
        return self._apply_terminal(cur, terminal_id, store.load(cur, case_id), case_id, command, now, rules)

    def _check(self, cur, key: str, at: datetime, now: datetime, rules: Rules):
        """A terminal's check on site: on the case it names (or its alarm's), as that member."""
        terminal_id, case_id, sensor_id, alarm_id = key.split("/")
        cur.execute("select outcome, note, photo_ref, photo_refs from alarm_checks where terminal_id = %s "
                    "and case_id is not distinct from %s and sensor_id is not distinct from %s "
                    "and alarm_id is not distinct from %s and time = %s",
                    (terminal_id, case_id or None, sensor_id or None, alarm_id or None, at))
        row = cur.fetchone()
        if row is None:
            raise LookupError(f"no check {key} at {at}")
        outcome, note, photo_ref, photo_refs = row
        case = case_of_answer(cur, case_id or None, sensor_id or None, alarm_id or None)
        if case is None and not case_id:
            return "skipped", None          # an alarm that is no case: the check stays on the alarm's record
        photos = tuple(dict.fromkeys(([photo_ref] if photo_ref else []) + list(photo_refs or ())))
        command = CheckAnswer(outcome, note or "", photos, sensor_id or None, alarm_id or None)
        return self._apply_terminal(cur, terminal_id, case, case_id, command, now, rules)

    def _apply_terminal(self, cur, terminal_id: str, case, case_id: str, command: Command, now: datetime,
                        rules: Rules):
        """A terminal's command on a case (loaded, locked; None: there is none), applied as that
        member, or refused with the reason in the audit trail."""
        case_id = case.case_id if case is not None else case_id
        member = self.city.member_by_terminal.get(terminal_id)
        actor = Actor(ActorKind.TERMINAL, terminal_id, frozenset({member.role.value}) if member else frozenset(),
                      member.grid_code if member else "")
        outcome = (apply(case, command, actor, now, rules) if case is not None
                   else Refusal("invalid", f"there is no case {case_id}"))
        if isinstance(outcome, Refusal):
            log.info("refused %s of %s by terminal %s: %s", command.name, case_id, terminal_id, outcome.reason)
            store.audit_refusal(cur, terminal_id, sorted(actor.roles), AuditAction.of_case(command.name),
                                f"case:{case_id}", case.org_code if case else actor.scope_code, outcome.reason)
            return "refused", None
        store.save(cur, outcome.case, rules)
        store.record(cur, [outcome], self.recipients)
        return "applied", outcome

    # --- shared -------------------------------------------------------------------------------------
    def _open(self, cur, now, rules, category, urgency, source, grid_code, title, place, link, lat, lon, detail):
        if grid_code is None:
            raise ValueError(f"a {source.value} without a grid cannot be a grid's case ({link[1]})")
        case_id = store.next_case_id(cur, now)
        outcome = open_case(case_id, category, urgency, source, grid_code, grid_code, INTAKE, now, rules,
                            title=title, place=place, detail=detail, lat=lat, lon=lon)
        if isinstance(outcome, Refusal):
            raise ValueError(outcome.reason)
        kind, key, source_key = link
        store.insert(cur, outcome.case, rules, source_key=source_key)
        store.link_source(cur, kind, key, case_id, now, "opened")
        store.add_events(cur, outcome.events)
        return "opened", outcome

    def _mergeable(self, cur, category: str, lat, lon, at: datetime):
        """The nearest open report case of the category within the merge distance and time."""
        if lat is None or lon is None:
            return None
        cur.execute("select case_id from cases where source = 'report' and category = %s and state = any(%s) "
                    "and opened_at >= %s and lat is not null and "
                    "sqrt(((lat - %s) * 111320) ^ 2 + ((lon - %s) * 111320 * cos(radians(%s))) ^ 2) <= %s "
                    "order by (lat - %s) ^ 2 + ((lon - %s) * cos(radians(%s))) ^ 2 limit 1",
                    (category, _OPEN_STATES, at - timedelta(minutes=self.settings.merge_minutes), lat, lon, lat,
                     self.settings.merge_metres, lat, lon, lat))
        row = cur.fetchone()
        return store.load(cur, row[0]) if row else None

    def _building(self, building_id: str | None, grid_code: str | None) -> str:
        building = self.city.building_by_id.get(building_id or "")
        if building is not None:
            return f"{building.name}, {self.city.org_name(building.grid_code)}"
        return self.city.org_name(grid_code) if grid_code else (building_id or "")



def _command(action: str, note: str, reason: str, photos: tuple[str, ...], extension: str | None) -> Command:
    """A terminal's case update as the command it asks for (the message's action, checked at decode)."""
    if action == "accept":
        return Accept()
    if action == "reject":
        return Reject(reason)
    if action == "start":
        return Start()
    if action == "feedback":
        return Feedback(note, photos)
    if action in ("verify_pass", "verify_fail"):
        return Verify(action == "verify_pass", reason, photos)
    return RequestExtension(Limit.parse(extension or ""), reason)

"""Which terminals hear of a case change, and what they are told (telemetry/notices.py).

A pure function of the case after the change and its events: the caller writes the rows into the
outbox (`case_notices`) in the transaction of the change, and the notifier (cases/notifier.py)
publishes them. Who hears what:

    dispatch                the new handler                     dispatched (accept or reject it)
    accept                  the handler                         accepted (the handling deadline)
    feedback                the supervisors of the case's grid  verify (on site), not the handler
    verify, failed          the handler                         rework (the reason says what is wrong)
    extension decided       the handler                         extension_approved / _refused
    escalate                the handler, and the supervisors    escalated (the level reached)
                            of the grids of the org unit
                            notified (the case's grid first,
                            at most MAX_ESCALATED of them);
                            a repeat of a step: the handler
                            and the case's grid's supervisor
    return, refuse,         the handler it had                  withdrawn (not yours any more)
      suspend
    resume, reopen          the handler                         resumed / reopened
    close                   the handler                         closed
    request_check           the member asked to check it        check (紧急核实: what to check, below)

A `check` notice adds what to check to the case's fields: for an alarm's case its `sensor_id` and
`alarm_id`, for an SOS's case who raised it and where they were last (`sos_terminal_id`,
`sos_name`, `sos_lat`, `sos_lon`, `sos_at`), and the dispatcher's `reason` if any. The member
answers on …/alarm/check (telemetry/kinds/alarm_check.py) naming the `case_id`.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

import orjson

from cases.model import Case, Event
from core.city import City
from core.orgcodes import contains
from core.roles import Role
from telemetry.notices import NoticeKind

MAX_ESCALATED = 50          # supervisors told of one escalation step, at most (a street has many grids)


@dataclass(frozen=True)
class NoticeRow:
    """One row of the outbox: to whom, what, and the body the terminal reads (no notice id yet)."""
    case_id: str
    terminal_id: str
    kind: NoticeKind
    time: datetime
    body: bytes             # JSON; the notifier adds the notice id


class Recipients:
    """The terminals of the city's grid supervisors, by grid and by org unit."""

    def __init__(self, city: City) -> None:
        self.city = city

    @cached_property
    def _supervisors(self) -> dict[str, list[str]]:
        by_grid: dict[str, list[str]] = {}
        for member in self.city.members:
            if member.role is Role.GRID_SUPERVISOR:
                by_grid.setdefault(member.grid_code, []).append(member.terminal_id)
        return by_grid

    def supervisors_of_grid(self, grid_code: str | None) -> list[str]:
        return list(self._supervisors.get(grid_code or "", ()))

    def supervisors_within(self, org_code: str, first_grid: str | None) -> list[str]:
        """The supervisors of the grids inside `org_code`, those of `first_grid` first."""
        terminals = self.supervisors_of_grid(first_grid) if first_grid and contains(org_code, first_grid) else []
        for grid_code in sorted(self._supervisors):
            if grid_code != first_grid and contains(org_code, grid_code):
                terminals.extend(self._supervisors[grid_code])
            if len(terminals) >= MAX_ESCALATED:
                break
        return terminals[:MAX_ESCALATED]


def notices_for(case: Case, events: Iterable[Event], recipients: Recipients) -> list[NoticeRow]:
    """The notices of `events`, which brought the case to `case`."""
    rows: list[NoticeRow] = []
    for event in events:
        for terminal_id, kind, level in _told(case, event, recipients):
            rows.append(NoticeRow(case.case_id, terminal_id, kind, event.at, _body(case, event, kind, level)))
    return rows


def _told(case: Case, event: Event, recipients: Recipients) -> list[tuple[str, NoticeKind, str | None]]:
    command, handler = event.command, case.handler
    before = event.detail.get("handler") or None          # a return or reject names the handler it had
    if command == "dispatch" and handler:
        return [(handler, NoticeKind.DISPATCHED, None)]
    if command == "accept" and handler:
        return [(handler, NoticeKind.ACCEPTED, None)]
    if command == "feedback":
        return [(t, NoticeKind.VERIFY, None) for t in recipients.supervisors_of_grid(case.grid_code) if t != handler]
    if command == "verify" and event.detail.get("passed") is False and handler:
        return [(handler, NoticeKind.REWORK, None)]
    if command == "decide_extension" and handler:
        approved = event.detail.get("approved")
        return [(handler, NoticeKind.EXTENSION_APPROVED if approved else NoticeKind.EXTENSION_REFUSED, None)]
    if command == "escalate":
        level = event.detail.get("level")
        told = [handler] if handler else []
        supervisors = (recipients.supervisors_within(event.detail.get("org_code", case.org_code), case.grid_code)
                       if not event.detail.get("repeat") else recipients.supervisors_of_grid(case.grid_code))
        told += [t for t in supervisors if t != handler]
        return [(t, NoticeKind.ESCALATED, level) for t in told]
    if command == "return" and before:
        return [(before, NoticeKind.WITHDRAWN, None)]
    if command in ("refuse", "suspend") and handler:
        return [(handler, NoticeKind.WITHDRAWN, None)]
    if command == "resume" and handler:
        return [(handler, NoticeKind.RESUMED, None)]
    if command == "reopen" and handler:
        return [(handler, NoticeKind.REOPENED, None)]
    if command == "close" and handler:
        return [(handler, NoticeKind.CLOSED, None)]
    if command == "request_check" and event.detail.get("terminal_id"):
        return [(event.detail["terminal_id"], NoticeKind.CHECK, None)]
    return []


CHECK_FIELDS = ("sensor_id", "alarm_id", "sos_terminal_id", "sos_name", "sos_lat", "sos_lon", "sos_at")


def _body(case: Case, event: Event, kind: NoticeKind, level: str | None) -> bytes:
    body = {
        "ts": event.at.isoformat(), "kind": kind.value, "case_id": case.case_id, "state": case.state.value,
        "category": case.category, "urgency": case.urgency.value, "title": case.title, "place": case.place,
        "lat": case.lat, "lon": case.lon, "deadline": case.deadline.isoformat() if case.deadline else None,
        "reason": event.reason, "level": level}
    if kind is NoticeKind.CHECK:            # what to check (CHECK_FIELDS), as far as it is known
        body.update((k, event.detail[k]) for k in CHECK_FIELDS if event.detail.get(k) is not None)
    return orjson.dumps(body)

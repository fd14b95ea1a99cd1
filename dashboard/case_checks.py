"""Emergency verification (紧急核实) from the screens: a dispatcher asks a member to check a case
raised by an alarm or an SOS on site, and the screens show what was asked and what the members
answered (the case page's timeline and the dispatcher console's chosen case).

The request is a case command (cases.model.RequestCheck) on dashboard/commands.py's path, as every
case action (dashboard.case_actions.CaseAction: located, authorized for the case's org unit,
decided by the machine on the locked row, written with its event and the `check` notice to the
member's terminal, audited), with what to check filled in inside the transaction
(cases.checks.what_to_check) and the member checked as a dispatch's handler is: a member's
terminal the dispatcher may be shown (dispatch.candidates.visible).

Who by default: the nearest available member of the case's own grid (dispatch.candidates' search,
`default_checker`), never the member in SOS nor one asked already who has not answered.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from dash import html

from cases import store
from cases.checks import what_to_check
from cases.model import Case, CheckAnswer, RequestCheck, Source
from core.catalogue import Label
from core.roles import ROLE_LABELS
from dashboard import photos
from dashboard.authz import Identity
from dashboard.case_actions import CASE_ACTIONS, CaseAction
from dashboard.commands import Refused, Target, Written
from dispatch.candidates import Candidate, visible

REQUEST_CHECK = CASE_ACTIONS[RequestCheck]
CHECKABLE = frozenset({Source.ALARM, Source.SOS})
CHECK_OUTCOME_LABELS = {"confirmed": Label("Confirmed", "确有险情"), "false_alarm": Label("False alarm", "误报"),
                        "need_help": Label("Need help", "需要支援")}   # the phone's words (handheld/app/js/words.js)


@dataclass(frozen=True)
class RequestCaseCheck(CaseAction):
    """Ask `command.terminal_id` to check the case on site (a RequestCheck, filled in here)."""

    def write(self, cur, who: Identity, now: datetime, target: Target) -> Written:
        ctx = target.subject
        if not isinstance(self.command, RequestCheck):
            raise Refused("a check request names the member to ask")
        terminal_id = self.command.terminal_id
        if terminal_id not in ctx.city.member_by_terminal:
            raise Refused(f"{terminal_id} is not a member's terminal")
        if not visible(ctx.city, who.scope_code or "", terminal_id):
            raise Refused(f"{terminal_id} is outside {who.user}'s scope")
        case = store.load(cur, self.case_id)          # locked until the commit
        if case is None:
            raise Refused(f"there is no case {self.case_id}")
        filled = what_to_check(cur, case, self.command, ctx.city)
        return CaseAction.write(replace(self, command=filled), cur, who, now, target)


def sos_terminal(case: Case) -> str | None:
    return case.source_key.removeprefix("sos:") if case.source is Source.SOS and case.source_key else None


def not_to_ask(case: Case) -> frozenset[str]:
    """Who is never asked to check this case: the member in SOS, and those asked who have not answered."""
    return frozenset(case.checkers) | ({sos_terminal(case)} if sos_terminal(case) else set())


def default_checker(case: Case, candidates: list[Candidate]) -> Candidate | None:
    """The member asked by default: the nearest available candidate homed in the case's grid, not
    one of `not_to_ask` (None: nobody there)."""
    skip = not_to_ask(case)
    fit = [c for c in candidates if c.available and c.grid_code == case.grid_code and c.terminal_id not in skip]
    return min(fit, key=lambda c: c.distance_m, default=None)


def check_options(city, case: Case, candidates: list[Candidate], scope_code: str) -> tuple[list[dict], str | None]:
    """The members a dispatcher may ask (dropdown options: the candidates near it, nearest available
    first, then the grid's other members), and the default's terminal."""
    skip = not_to_ask(case)
    first = default_checker(case, candidates)
    near = sorted((c for c in candidates if c.terminal_id not in skip), key=lambda c: (not c.available, c.distance_m))
    options = [{"label": f"{c.name} · {ROLE_LABELS[c.role]} · {c.distance_m:.0f} m"
                         + ("" if c.available else f" · {c.status.status.value}"), "value": c.terminal_id}
               for c in near]
    listed = {c.terminal_id for c in near} | skip
    options += [{"label": f"{m.name} · {ROLE_LABELS[m.role]} · {Label('no recent position', '无近期定位')}",
                 "value": m.terminal_id} for m in city.members
                if m.grid_code == case.grid_code and m.terminal_id not in listed
                and visible(city, scope_code, m.terminal_id)]
    return options, first.terminal_id if first else None


def checks_of(events: list[dict]) -> list[dict]:
    """The checks of a case's history (cases.reads' events, oldest first), newest first: each
    request `{"asked_at", "terminal_id", "asked_by", "answer": None or {"time", "outcome", "note",
    "photo_refs"}}`; an answer goes to its member's latest request before it."""
    checks: list[dict] = []
    for e in events:
        detail = e.get("detail") or {}
        if e["command"] == RequestCheck.name:
            checks.append({"asked_at": e["time"], "terminal_id": detail.get("terminal_id"), "asked_by": e["actor"],
                           "answer": None})
        elif e["command"] == CheckAnswer.name:
            asked = next((c for c in reversed(checks) if c["terminal_id"] == e["actor"] and c["answer"] is None),
                         None)
            answer = {"time": e["time"], "outcome": detail.get("outcome"), "note": detail.get("note") or "",
                      "photo_refs": list(detail.get("photo_refs") or ())}
            if asked is None:
                checks.append({"asked_at": None, "terminal_id": e["actor"], "asked_by": None, "answer": answer})
            else:
                asked["answer"] = answer
    return checks[::-1]


def thumbnails(refs: list[str]) -> list:
    """The photos the server holds, as thumbnails linking to the full photo; any other ref as text."""
    shown = []
    for ref in refs:
        link = photos.url(ref)
        shown.append(html.A(href=link, target="_blank", rel="noopener noreferrer", className="photo-link",
                            children=html.Img(src=photos.url(ref, thumb=True), className="photo-thumb",
                                              alt=str(photos.STAGE_LABELS["check"]), referrerPolicy="no-referrer"))
                     if link else html.Code(ref, className="case-photo"))
    return shown


def check_list(city, events: list[dict], prefix: str, local):
    """The checks asked and answered (newest first), each with who, when, the outcome, the note and
    the photos; None when there are none. `local` formats a time."""
    checks = checks_of(events)
    if not checks:
        return None
    items = []
    for n, c in enumerate(checks):
        member = city.member_by_terminal.get(c["terminal_id"] or "")
        who = f"{member.name} · {ROLE_LABELS[member.role]}" if member else (c["terminal_id"] or "?")
        answer = c["answer"]
        if answer is None:
            state = html.Span(str(Label("asked, no answer yet", "已请求，待回复")), className="check-waiting")
            body = []
        else:
            words = CHECK_OUTCOME_LABELS.get(answer["outcome"], Label(answer["outcome"], answer["outcome"]))
            state = html.Strong(str(words), className=f"check-outcome check-{answer['outcome']}")
            body = [html.Div(answer["note"], className="check-note") if answer["note"] else None,
                    html.Div(thumbnails(answer["photo_refs"]), className="photo-thumbs")
                    if answer["photo_refs"] else None]
        when = local(answer["time"]) if answer else local(c["asked_at"])
        items.append(html.Li(id=f"{prefix}-check-{n}", className="case-check", children=[
            html.Div([state, f" · {who} · {when}"]), *body]))
    return html.Ul(items, className="case-checks", id=f"{prefix}-checks")

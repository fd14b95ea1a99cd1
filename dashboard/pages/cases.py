"""The case list, for dispatchers and leaders: every case of the scope, filtered (open, overdue,
escalated, an SOS nobody has acknowledged, finished, one state; category; source; a number or
words), sorted (time left first, by default), exported as CSV (`/cases.csv`, the same selection,
audited). A dispatcher enters a case by hand here too (a 12345 hotline call, a walk-in). Each row
opens the case's page (dashboard/pages/case.py).

Live, like the wall and the console: the page's feed (`cases`) carries a case's number whenever a
case of the scope changes (the hub's room for the scope: the browser learns nothing else), and
each frame with one makes the server list the rows again (assets/cases.js bumps `cases-pushed`).
What changes with no event, as the clock runs, is kept by the browser (the time left and its
colour tick every second: `data-deadline`) and by a slow fallback (FALLBACK_MS: a case that turns
overdue joins "overdue now", the words of a running clock are the server's again).

The callbacks and the export ask authz for the identity and the scope on every request.
"""
from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlencode

from dash import Input, Output, State, dcc, html
from flask import Response, request

from cases.limits import categories
from cases.model import Case
from cases.model import State as CaseState
from core import freetext
from core.catalogue import (
    CASE_CATEGORY_LABELS,
    CASE_SOURCE_LABELS,
    CASE_STAGE_LABELS,
    CASE_STATE_LABELS,
    ORG_LEVEL_LABELS,
    URGENCY_LABELS,
    AuditAction,
    Label,
)
from core.city import CITY_TZ
from core.roles import UserRole
from dashboard import live_ui
from dashboard.authz import Scope, asked_scope, authorize, current_identity
from dashboard.case_actions import OPEN_CASE, OpenHotlineCase
from dashboard.declarations import callback, export, page, query_params
from dashboard.feeds import Feed
from dashboard.pages.export import authorized_export, csv_response
from dashboard.queries import CaseFilter
from dashboard.state import app_state
from telemetry import live

SHOWN_ROWS = 100               # more: narrow the filter, or export (the browser redraws them at every change)
EXPORT_PATH = "/cases.csv"
# The changes come pushed; this slow refresh is for what changes with no event as the clock runs (a
# case turning overdue joins "overdue now"; the words of a running clock). Not a poll for changes.
FALLBACK_MS = 60_000
STATUS_LABELS = {"open": Label("open", "未结"), "overdue": Label("overdue now", "已超时"),
                 "escalated": Label("escalated", "已升级"),
                 "unacknowledged": Label("SOS not acknowledged", "求助未确认"),
                 "finished": Label("finished", "已办结"), "all": Label("all", "全部")}
SORT_LABELS = {"deadline": Label("time left", "剩余时间"), "urgency": Label("urgency", "紧急程度"),
               "opened": Label("newest", "最新"), "escalation": Label("escalation level", "升级层级"),
               "state": Label("state", "状态"), "category": Label("category", "类别")}
HEADINGS = [Label("Case", "案件"), Label("Category", "类别"), Label("What · where", "事项 · 地点"),
            Label("State", "状态"), Label("Time left", "剩余时间"), Label("Escalated to", "升级至"),
            Label("Handler", "处置人"), Label("Org unit", "单位"), Label("Opened", "立案时间")]
EXPORT_COLUMNS = ("case_id", "category", "urgency", "source", "state", "stage", "title", "place", "org_code",
                  "org_name", "grid_code", "handler", "handler_name", "opened_at", "deadline_original", "deadline",
                  "overdue", "escalation_level", "rework_count", "return_count", "extension_count", "reopen_count",
                  "acknowledged_by", "rating", "closed_at")
DISPATCHERS = OPEN_CASE.roles


def wire_case_seen(q, c: live.CaseChange) -> dict:
    """What the case screens receive of a case change: which case (they list it again from the
    database, authorized there for the scope of the URL)."""
    return {"key": c.case_id}


FEED = Feed("cases", wire={"case": wire_case_seen}, snapshot=lambda q, scope: {})


def _options(labels: dict) -> list[dict]:
    return [{"label": str(label), "value": key} for key, label in labels.items()]


def layout(state, scope: Scope, kiosk: bool = False):
    identity = current_identity()
    statuses = _options(STATUS_LABELS) + [{"label": f"· {label}", "value": key}
                                         for key, label in CASE_STATE_LABELS.items()]
    category_options = [{"label": str(CASE_CATEGORY_LABELS.get(c, c)), "value": c} for c in categories()]
    return html.Div(className="audit cases", id="cases", children=[
        live_ui.socket("cases", FEED, scope.code),
        dcc.Store(id="cases-pushed", data=0),
        html.Div(className="dispatch-head", children=[
            html.H1(str(Label("Cases", "案件"))),
            html.Div(scope.name, id="cases-scope-name", className="dispatch-scope"),
            live_ui.badge("cases"),
        ]),
        html.Div(className="audit-controls", children=[
            html.Label([str(Label("Status", "状态")), dcc.Dropdown(id="cases-status", options=statuses, value="open",
                                                                 clearable=False)]),
            html.Label([str(Label("Category", "类别")), dcc.Dropdown(id="cases-category", options=category_options,
                                                                   placeholder=str(Label("every category", "全部")))]),
            html.Label([str(Label("Source", "来源")), dcc.Dropdown(id="cases-source",
                                                                 options=_options(CASE_SOURCE_LABELS),
                                                                 placeholder=str(Label("every source", "全部")))]),
            html.Label([str(Label("Find", "查找")), dcc.Input(id="cases-text", type="search", debounce=True,
                                                            placeholder=str(Label("number, words", "编号、关键词")))]),
            html.Label([str(Label("Sort by", "排序")), dcc.Dropdown(id="cases-sort", options=_options(SORT_LABELS),
                                                                  value="deadline", clearable=False)]),
            html.A(str(Label("Export CSV", "导出 CSV")), id="cases-export", className="button", href=EXPORT_PATH),
        ]),
        _new_case_form(state, scope) if identity is not None and identity.roles & DISPATCHERS else html.Div(),
        html.Div(id="cases-count", className="audit-count", role="status"),
        html.Div(id="cases-rows", className="audit-rows"),
        dcc.Interval(id="cases-fallback", interval=FALLBACK_MS),
    ])


PAGE = page("/cases", Label("Cases", "案件"),
            frozenset({UserRole.DISPATCHER, UserRole.LEADER, UserRole.ADMIN}), layout, feed=FEED, order=30)


def _selection(identity, search, status, category, source, text, sort):
    state = app_state()
    decision = authorize(state.city, identity, PAGE, asked_scope(identity, query_params(search)))
    if not decision:
        return state, decision, None
    return state, decision, CaseFilter.from_params({"status": status, "category": category, "source": source,
                                                    "text": text, "sort": sort})


@callback(Output("cases-rows", "children"), Output("cases-count", "children"), Output("cases-export", "href"),
          Input("cases-status", "value"), Input("cases-category", "value"), Input("cases-source", "value"),
          Input("cases-text", "value"), Input("cases-sort", "value"), Input("cases-pushed", "data"),
          Input("cases-fallback", "n_intervals"), State("shell-url", "search"),
          roles=PAGE.roles, why="the case list's rows for the filter (authorizes the scope)")
def show(status, category, source, text, sort, _pushed, _fallback, search):
    """The rows for the scope of the URL (authorized again here: a callback is a request of its own),
    again whenever a case of the scope changes (pushed). Only inputs every role's page holds: the
    entry form is a dispatcher's alone (a case entered there comes back pushed, like any other)."""
    identity = current_identity()
    try:
        state, decision, wanted = _selection(identity, search, status, category, source, text, sort)
    except ValueError as bad:
        return html.P(str(bad), className="audit-error"), "", EXPORT_PATH
    if not decision:
        return html.P(decision.reason, className="refusal"), "", EXPORT_PATH
    rows, total = state.queries.cases(decision.scope, wanted, SHOWN_ROWS)
    href = f"{EXPORT_PATH}?{urlencode({**wanted.params(), 'scope': decision.scope.code})}"
    count = (f"{total:,} cases" if total <= SHOWN_ROWS else
             f"the first {SHOWN_ROWS} of {total:,} cases (narrow the filter, or export them all)")
    return _table(state, rows, datetime.now(timezone.utc)), count, href


def _table(state, rows: list[Case], now: datetime):
    """One component per cell and none inside (but the link): Dash's renderer slows down much
    faster than the number of components it is handed, and this table is redrawn at every change."""
    if not rows:
        return html.P(str(Label("No case matches.", "没有符合条件的案件。")), className="placeholder")
    head = html.Thead(html.Tr([html.Th(str(h)) for h in HEADINGS]))
    body = [html.Tr(className=f"cases-row {time_class(c, now)} cases-{_badge(c)}", children=[
        html.Td(html.A(c.case_id, href=f"/case/{c.case_id}", className="case-link"), className="audit-time"),
        html.Td(f"{CASE_CATEGORY_LABELS.get(c.category, c.category)} · {_urgency_text(c)} · "
                f"{CASE_SOURCE_LABELS[c.source.value]}"),
        html.Td(f"{c.title} · {c.place}" if c.place and c.place != c.title else c.title),
        html.Td(f"{CASE_STATE_LABELS[c.state.value]}" + (f" · {CASE_STAGE_LABELS[c.stage.value]}" if c.stage else "")),
        html.Td(time_left(c, now), className="case-left", **clock_data(c)),
        html.Td(str(ORG_LEVEL_LABELS[c.escalation_level]) if c.escalation_level else "–"),
        html.Td(handler_name(state, c)),
        html.Td(state.city.org_name(c.org_code)),
        html.Td(local(c.opened_at), className="audit-time"),
    ]) for c in rows]
    return html.Table(className="data-table", id="cases-table", children=[head, html.Tbody(body)])


def _badge(case: Case) -> str:
    return "sos" if case.source.value == "sos" else case.urgency.value


def _urgency_text(case: Case) -> str:
    return str(CASE_SOURCE_LABELS["sos"]) if case.source.value == "sos" else str(URGENCY_LABELS[case.urgency.value])


# --- shared with the case page ------------------------------------------------------------------------

def local(at: datetime | None, with_date: bool = True) -> str:
    if at is None:
        return "–"
    return at.astimezone(CITY_TZ).strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M:%S")


def duration(seconds: float) -> str:
    seconds = abs(int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes < 10 else f"{minutes} min"


def time_left(case: Case, now: datetime) -> str:
    if case.deadline is None:
        return str(Label("no clock", "不计时")) if case.state is CaseState.SUSPENDED else "–"
    left = (case.deadline - now).total_seconds()
    return f"{duration(left)} {Label('overdue', '超时')}" if left < 0 else duration(left)


def clock_data(case: Case) -> dict:
    """What the browser needs to move a running clock on between refreshes (assets/cases.js): the
    deadline and the amber mark (epoch seconds), and the word for overdue."""
    if case.deadline is None:
        return {}
    return {"data-deadline": case.deadline.timestamp(),
            "data-warn": case.warn_at.timestamp() if case.warn_at is not None else "",
            "data-overdue": str(Label("overdue", "超时"))}


def time_class(case: Case, now: datetime) -> str:
    if case.deadline is None:
        return "case-idle"
    if case.deadline < now:
        return "case-overdue"
    return "case-warn" if case.warn_at is not None and case.warn_at <= now else "case-ok"


def urgency_badge(case: Case):
    kind = "sos" if case.source.value == "sos" else case.urgency.value
    text = str(CASE_SOURCE_LABELS["sos"]) if kind == "sos" else str(URGENCY_LABELS[case.urgency.value])
    return html.Span(text, className=f"case-badge case-badge-{kind}")


def handler_name(state, case: Case) -> str:
    member = state.city.member_by_terminal.get(case.handler or "")
    return member.name if member else (case.handler or "–")


# --- a case entered by hand ------------------------------------------------------------------------------

def _new_case_form(state, scope: Scope):
    places = [o for o in state.queries.org_options(scope.code) if o["value"]] + [
        {"label": g.name, "value": g.code} for g in state.city.grids if scope.covers(g.code)]
    category_options = [{"label": str(CASE_CATEGORY_LABELS.get(c, c)), "value": c} for c in categories()]
    return html.Details(className="cases-new", id="cases-new", children=[
        html.Summary(str(Label("Enter a case (hotline 12345, walk-in)", "录入案件（12345 热线、来访）"))),
        html.Div(className="admin-form", children=[
            dcc.Dropdown(id="cases-new-category", options=category_options,
                         placeholder=str(Label("category", "类别"))),
            dcc.Dropdown(id="cases-new-urgency", options=_options(URGENCY_LABELS), value="normal", clearable=False),
            dcc.Dropdown(id="cases-new-org", options=places, placeholder=str(Label("grid or org unit", "网格或单位"))),
            dcc.Input(id="cases-new-title", placeholder=str(Label("what is wrong", "事项")),
                      maxLength=freetext.LINE.max_length),
            dcc.Input(id="cases-new-place", placeholder=str(Label("where, as the caller said", "地点")),
                      maxLength=freetext.LINE.max_length),
            dcc.Input(id="cases-new-note", placeholder=str(Label("caller, details", "来电人、详情")),
                      maxLength=freetext.NOTE.max_length),
            html.Button(str(Label("Register", "立案")), id="cases-new-submit", className="button"),
        ]),
        html.Div(id="cases-new-result", className="admin-result", role="status"),
    ])


@callback(Output("cases-new-result", "children"), Output("cases-new-title", "value"),
          Output("cases-new-place", "value"), Output("cases-new-note", "value"),
          Input("cases-new-submit", "n_clicks"),
          State("cases-new-category", "value"), State("cases-new-urgency", "value"), State("cases-new-org", "value"),
          State("cases-new-title", "value"), State("cases-new-place", "value"), State("cases-new-note", "value"),
          prevent_initial_call=True,
          roles=OPEN_CASE.roles, why="enter a case by hand (authorized for its org unit)", changes=(OPEN_CASE,))
def enter_case(_clicks, category, urgency, org_code, title, place, note):
    """A hotline case: dashboard/commands.py authorizes it for the org unit chosen and audits it."""
    state = app_state()
    if not category or not org_code:
        return html.Span(str(Label("Choose a category and a grid or org unit.", "请选择类别和网格/单位。")),
                         className="admin-refused"), title, place, note
    result = state.commands.execute(current_identity(), OpenHotlineCase(
        category, urgency or "normal", org_code, title or "", place or "", state.case_rules, note or ""),
        request.remote_addr)
    if not result.ok:
        return html.Span(f"Refused: {result.reason}", className="admin-refused"), title, place, note
    return html.Span(["Registered ", dcc.Link(result.reply, href=f"/case/{result.reply}"), f" · {result.summary}"],
                     className="admin-done"), "", "", ""


# --- the export -----------------------------------------------------------------------------------------

@export(EXPORT_PATH, PAGE.roles, "the case list as CSV (authorizes the scope; audited)")
def export_csv():
    """`/cases.csv?scope=…&status=…&category=…&source=…&text=…&sort=…&days=…`: the selection as
    CSV; audited."""
    asked = authorized_export(PAGE, AuditAction.CASE_EXPORT, EXPORT_PATH, CaseFilter.from_params)
    if isinstance(asked, Response):
        return asked
    state, scope, wanted = asked
    now = datetime.now(timezone.utc)

    def rows():
        for c in state.queries.cases_export(scope, wanted):
            member = state.city.member_by_terminal.get(c.handler or "")
            values = {**c.__dict__, "urgency": c.urgency.value, "source": c.source.value, "state": c.state.value,
                      "stage": c.stage.value if c.stage else None, "org_name": state.city.org_name(c.org_code),
                      "handler_name": member.name if member else None,
                      "overdue": c.deadline is not None and c.deadline < now}
            yield [_iso(values[k]) for k in EXPORT_COLUMNS]

    name = f"cases-{scope.code or 'city'}-{wanted.status}-{now.astimezone(CITY_TZ):%Y%m%d-%H%M}.csv"
    return csv_response(name, list(EXPORT_COLUMNS), rows())


def _iso(value):
    return value.astimezone(CITY_TZ).isoformat() if isinstance(value, datetime) else value



# --- live -------------------------------------------------------------------------------------------

live_ui.follow_frames("cases", "casesLive", Output("cases-pushed", "data"), PAGE.roles)

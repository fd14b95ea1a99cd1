"""The cases' rules, for admins of the whole city (`/rules`, linked from /admin): the time limits
(versioned: a change makes a new version; a case keeps the version it started with), the working
calendar (the State Council's notices as chinesecalendar lists them, a provisional Mon–Fri for a
year without a notice yet, and the admins' overrides), and the intake rows the cases engine gave
up on. Leaders see it too, without the forms. Changes go through dashboard/commands.py (audited);
the cases engine reads the rules again within a minute.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta

from dash import Input, Output, State, dcc, html
from flask import request

from cases.limits import ANY, Limit, Stage, Unit, categories
from core.catalogue import CASE_CATEGORY_LABELS, CASE_STAGE_LABELS, URGENCY_LABELS, Label
from core.city import CITY_TZ
from core.roles import UserRole
from dashboard.authz import Scope, authorize, current_identity
from dashboard.case_actions import NEW_LIMITS, SET_CALENDAR_DAY, NewLimitsVersion, SetCalendarDay, limit_spec
from dashboard.declarations import callback, page
from dashboard.state import app_state

EVERY_CATEGORY = "* every category 所有类别"
SOURCE_LABELS = {"notice": Label("State Council notice", "国务院通知"),
                 "provisional": Label("provisional Mon–Fri", "临时（周一至周五）"), "admin": Label("admin", "管理员")}


def layout(state, scope: Scope, kiosk: bool = False):
    identity = current_identity()
    editor = identity is not None and UserRole.ADMIN in identity.roles and not identity.scope_code
    return html.Div(className="admin rules", id="rules", children=[
        html.Div(className="dispatch-head", children=[
            html.H1(str(PAGE.label)),
            dcc.Link(f"← {state.page_at('/admin').label}", href="/admin", className="button small"),
        ]),
        html.Div(id="rules-calendar-status"),
        html.Div(className="admin-columns", children=[
            html.Section(className="admin-section", children=[
                html.H2(str(Label("Time limits", "办理时限"))),
                _limits_form() if editor else None,
                html.Div(id="rules-limits-result", className="admin-result", role="status"),
                html.Div(id="rules-limits"),
            ]),
            html.Section(className="admin-section", children=[
                html.H2(str(Label("Working calendar", "工作日历"))),
                _calendar_form() if editor else None,
                html.Div(id="rules-calendar-result", className="admin-result", role="status"),
                html.Div(id="rules-calendar"),
                html.H2(str(Label("Intake rows held", "无法入案的记录"))),
                html.Div(id="rules-held"),
            ]),
        ]),
    ])


PAGE = page("/rules", Label("Time limits and working calendar", "办理时限与工作日历"),
            frozenset({UserRole.ADMIN, UserRole.LEADER}), layout, nav=False, order=100, section="admin")


def _limits_form():
    category_options = [{"label": f"{CASE_CATEGORY_LABELS.get(c, c)}", "value": c} for c in categories()]
    return html.Div(className="admin-form", children=[
        dcc.Dropdown(id="rules-category", options=[{"label": EVERY_CATEGORY, "value": ANY}, *category_options],
                     placeholder=str(Label("category", "类别"))),
        dcc.Dropdown(id="rules-stage", options=[{"label": str(CASE_STAGE_LABELS[s.value]), "value": s.value}
                                                for s in Stage], placeholder=str(Label("stage", "环节"))),
        dcc.Dropdown(id="rules-urgency", options=[{"label": "* both 均可", "value": ANY}] + [
            {"label": str(label), "value": key} for key, label in URGENCY_LABELS.items()], value=ANY, clearable=False),
        dcc.Input(id="rules-spec", placeholder="30m · 2h · 5wh · 1wd", debounce=False),
        html.Button(str(Label("New version", "生成新版本")), id="rules-limits-save", className="button"),
    ])


def _calendar_form():
    return html.Div(className="admin-form", children=[
        dcc.Input(id="rules-day", type="date"),
        dcc.Dropdown(id="rules-workday", options=[{"label": str(Label("day off", "休息日")), "value": "off"},
                                                  {"label": str(Label("workday", "工作日")), "value": "work"}],
                     value="off", clearable=False),
        dcc.Input(id="rules-day-name", placeholder=str(Label("name (e.g. 春节, 调休)", "名称")), maxLength=60),
        html.Button(str(Label("Set the day", "设置")), id="rules-day-save", className="button"),
    ])


def _allowed():
    state, identity = app_state(), current_identity()
    return state, identity, authorize(state.city, identity, PAGE, "")


@callback(Output("rules-limits", "children"), Output("rules-calendar", "children"), Output("rules-held", "children"),
          Output("rules-calendar-status", "children"),
          Input("rules-limits-result", "children"), Input("rules-calendar-result", "children"),
          roles=PAGE.roles, why="the time limits, the calendar, the held intake rows")
def show(_limits_done, _day_done):
    """The current limits, the calendar's exceptions and its status, the held intake rows (authorized
    again here: a callback is a request of its own)."""
    state, identity, decision = _allowed()
    if not decision:
        refused = html.P(decision.reason, className="refusal")
        return refused, None, None, None
    q = state.queries
    versions = q.limit_versions()
    today = datetime.now(CITY_TZ).date()
    return (_limits(q, versions), _calendar(q, today), _held(q.held_inbox()), _calendar_status(q, today))


def _limits(q, versions: list[dict]):
    if not versions:
        return html.P("–")
    current = versions[0]["version"]
    table: dict[str, dict[str, dict[str, str]]] = {}
    for category, stage, urgency, amount, unit in q.limit_rows(current):
        table.setdefault(category, {}).setdefault(stage, {})[urgency] = limit_spec(Limit(amount, Unit(unit)))
    head = html.Thead(html.Tr([html.Th(str(Label("Category", "类别")))] +
                              [html.Th(str(CASE_STAGE_LABELS[s.value])) for s in Stage]))
    order = [ANY] + [c for c in categories() if c in table]
    rows = [html.Tr([html.Td(str(CASE_CATEGORY_LABELS.get(c, EVERY_CATEGORY)))] +
                    [html.Td(_cell(table[c].get(s.value, {}), c)) for s in Stage]) for c in order if c in table]
    history = html.Ul([html.Li(f"version {v['version']} · {v['created_by']} · "
                               f"{v['created_at'].astimezone(CITY_TZ):%Y-%m-%d %H:%M} · {v['rows']} rows")
                       for v in versions[:10]], className="case-notices", id="rules-versions")
    return [html.P(f"Version {current} (current). Cells: any urgency, or urgent / normal; a category's own row "
                   "overrides the * row (· : the * row applies). m = clock minutes, h = clock hours, "
                   "wh = working hours, wd = working days.",
                   className="audit-dim", id="rules-current"),
            html.Div(html.Table(className="data-table", id="rules-table", children=[head, html.Tbody(rows)]),
                     className="audit-rows"),
            html.H2(str(Label("Versions", "版本"))), history]


def _cell(by_urgency: dict[str, str], category: str) -> str:
    """A stage's limits in a category's row; empty: the * row's apply."""
    parts = []
    if ANY in by_urgency:
        parts.append(by_urgency[ANY])
    for key in ("urgent", "normal"):
        if key in by_urgency:
            parts.append(f"{key[0].upper()} {by_urgency[key]}")
    return " · ".join(parts) or ("–" if category == ANY else "·")


def _calendar_status(q, today: date):
    years = [today.year - 1, today.year, today.year + 1]
    sources = q.calendar_sources(years)
    notes = []
    for year in years:
        counts = sources.get(year, {})
        if counts.get("provisional"):
            notes.append(html.Div(className="rules-warning", id=f"rules-provisional-{year}", children=[
                f"{year}: no State Council notice in chinesecalendar yet — its workdays are Mon–Fri without the "
                f"statutory holidays, provisional ({counts['provisional']} days). When the notice comes out (late "
                f"in the year before), enter its holidays and make-up working days below, or update the library."]))
    return notes


def _calendar(q, today: date):
    days = q.calendar_exceptions(today - timedelta(days=30), today + timedelta(days=400))
    if not days:
        return html.P("–")
    rows = [html.Tr([html.Td(f"{d['day']:%Y-%m-%d %a}", className="audit-time"),
                     html.Td(str(Label("workday", "工作日")) if d["workday"] else str(Label("day off", "休息日"))),
                     html.Td(d["name"] or "–"), html.Td(str(SOURCE_LABELS.get(d["source"], d["source"]))),
                     html.Td(d["updated_by"] if d["source"] == "admin" else "")]) for d in days]
    head = html.Thead(html.Tr([html.Th(str(h)) for h in (Label("Day", "日期"), Label("Is", "类型"),
                                                         Label("Name", "名称"), Label("Source", "来源"),
                                                         Label("By", "设置人"))]))
    return html.Div(html.Table(className="data-table", id="rules-days", children=[head, html.Tbody(rows)]),
                    className="audit-rows rules-days")


def _held(rows: list[dict]):
    if not rows:
        return html.P(str(Label("None: every report, alarm and SOS became a case or joined one.",
                                "无：所有上报、告警与求助均已入案。")), className="audit-dim", id="rules-held-none")
    return html.Table(className="data-table", id="rules-held-table", children=[
        html.Thead(html.Tr([html.Th(str(h)) for h in (Label("Kind", "类型"), Label("Source", "来源"),
                                                      Label("Time", "时间"), Label("Tries", "次数"),
                                                      Label("Error", "错误"))])),
        html.Tbody([html.Tr([html.Td(r["kind"]), html.Td(r["key"]),
                             html.Td(f"{r['time'].astimezone(CITY_TZ):%Y-%m-%d %H:%M:%S}", className="audit-time"),
                             html.Td(str(r["attempts"])), html.Td(r["last_error"] or "")]) for r in rows])])


@callback(Output("rules-limits-result", "children"), Input("rules-limits-save", "n_clicks"),
          State("rules-category", "value"), State("rules-stage", "value"), State("rules-urgency", "value"),
          State("rules-spec", "value"), prevent_initial_call=True,
          roles=NEW_LIMITS.roles, why="a new version of the time limits", changes=(NEW_LIMITS,))
def save_limit(_clicks, category, stage, urgency, spec):
    state = app_state()
    if not category or not stage or not spec:
        return html.Span(str(Label("Choose a category and a stage, and type the limit.", "请选择类别、环节并填写时限")),
                         className="admin-refused")
    result = state.commands.execute(current_identity(), NewLimitsVersion(category, stage, urgency or ANY, spec.strip(),
                                                                         state.case_rules), request.remote_addr)
    if not result.ok:
        return html.Span(f"Refused: {result.reason}", className="admin-refused")
    return html.Span(f"Version {result.reply}: {result.summary}. New stage clocks use it; running cases keep theirs.",
                     className="admin-done")


@callback(Output("rules-calendar-result", "children"), Input("rules-day-save", "n_clicks"),
          State("rules-day", "value"), State("rules-workday", "value"), State("rules-day-name", "value"),
          prevent_initial_call=True,
          roles=SET_CALENDAR_DAY.roles, why="an admin's calendar day", changes=(SET_CALENDAR_DAY,))
def save_day(_clicks, day, workday, name):
    state = app_state()
    try:
        chosen = date.fromisoformat(day or "")
    except ValueError:
        return html.Span(str(Label("Choose a day.", "请选择日期。")), className="admin-refused")
    result = state.commands.execute(current_identity(), SetCalendarDay(chosen, workday == "work", name or "",
                                                                       state.case_rules), request.remote_addr)
    if not result.ok:
        return html.Span(f"Refused: {result.reason}", className="admin-refused")
    return html.Span(f"Set: {result.summary}. Deadlines computed from now on count it.", className="admin-done")

"""The audit trail, for leaders and admins: who did what, when, where, and what it changed.

Every login, failed login, logout, token use, refusal and data-changing action is a row
(dashboard/commands.py writes them; the database refuses to change or remove one). This page
reads them for the scope of the URL, newest first, filtered by period, action, outcome and actor,
and exports the same selection as CSV (`/audit.csv`, itself audited). Both ask authz for the
identity and scope on every request: a leader of one street sees that street's rows only.
"""
from __future__ import annotations

from urllib.parse import urlencode

import orjson
from dash import Input, Output, State, dcc, html
from flask import Response

from core.catalogue import ACTION_LABELS, AuditAction, Label
from core.city import CITY_TZ
from core.roles import USER_ROLE_LABELS, UserRole
from dashboard.authz import Scope, asked_scope, authorize, current_identity
from dashboard.declarations import callback, export, page, query_params
from dashboard.pages.export import authorized_export, csv_response
from dashboard.queries import AuditFilter
from dashboard.state import app_state

SHOWN_ROWS = 150                    # on the page (Dash redraws many components slowly); the export has them all
EXPORT_PATH = "/audit.csv"
OUTCOME_LABELS = {"done": Label("done", "完成"), "refused": Label("refused", "拒绝")}
HEADINGS = [Label("Time", "时间"), Label("Who", "操作人"), Label("Action", "操作"), Label("Target", "对象"),
            Label("Org unit", "单位"), Label("Outcome", "结果"), Label("Reason", "原因"),
            Label("Change", "变更"), Label("From", "来源地址")]


def layout(state, scope: Scope, kiosk: bool = False):
    wanted = AuditFilter.from_params({})
    actions = [{"label": f"{label} · {key}", "value": key} for key, label in ACTION_LABELS.items()]
    outcomes = [{"label": str(label), "value": key} for key, label in OUTCOME_LABELS.items()]
    return html.Div(className="audit", id="audit", children=[
        html.Div(className="dispatch-head", children=[
            html.H1(str(Label("Audit trail", "审计日志"))),
            html.Div(scope.name, id="audit-scope-name", className="dispatch-scope"),
        ]),
        html.Div(className="audit-controls", children=[
            html.Label([str(Label("From", "起")), dcc.Input(id="audit-from", type="date",
                                                          value=wanted.first_day.isoformat())]),
            html.Label([str(Label("To", "止")), dcc.Input(id="audit-to", type="date",
                                                        value=wanted.last_day.isoformat())]),
            html.Label([str(Label("Action", "操作")), dcc.Dropdown(id="audit-action", options=actions,
                                                                 placeholder=str(Label("every action", "全部")))]),
            html.Label([str(Label("Outcome", "结果")), dcc.Dropdown(id="audit-outcome", options=outcomes,
                                                                  placeholder=str(Label("both", "全部")))]),
            html.Label([str(Label("Who", "操作人")), dcc.Input(id="audit-actor", type="search", debounce=True,
                                                             placeholder=str(Label("a name, or part", "用户名")))]),
            html.A(str(Label("Export CSV", "导出 CSV")), id="audit-export", className="button", href=EXPORT_PATH),
        ]),
        html.Div(id="audit-count", className="audit-count", role="status"),
        html.Div(id="audit-rows", className="audit-rows"),
    ])


PAGE = page("/audit", Label("Audit", "审计"), frozenset({UserRole.LEADER, UserRole.ADMIN}), layout, order=70)


@callback(Output("audit-rows", "children"), Output("audit-count", "children"), Output("audit-export", "href"),
          Input("audit-from", "value"), Input("audit-to", "value"), Input("audit-action", "value"),
          Input("audit-outcome", "value"), Input("audit-actor", "value"), State("shell-url", "search"),
          roles=PAGE.roles, why="the audit trail's rows for the filter (authorizes the scope)")
def show(first, last, action, outcome, actor, search):
    """The rows for the scope of the URL (authorized again here: a callback is a request of its own)."""
    state = app_state()
    identity = current_identity()
    decision = authorize(state.city, identity, PAGE, asked_scope(identity, query_params(search)))
    if not decision:
        return html.P(decision.reason, className="refusal"), "", EXPORT_PATH
    try:
        wanted = AuditFilter.from_params({"from": first, "to": last, "action": action, "outcome": outcome,
                                          "actor": actor})
    except ValueError as bad:
        return html.P(str(bad), className="audit-error"), "", EXPORT_PATH
    rows, total = state.queries.audit(decision.scope, wanted, SHOWN_ROWS)
    href = f"{EXPORT_PATH}?{urlencode({**wanted.params(), 'scope': decision.scope.code})}"
    count = (f"{total:,} rows · {wanted.first_day} – {wanted.last_day}" if total <= SHOWN_ROWS else
             f"the newest {SHOWN_ROWS} of {total:,} rows · {wanted.first_day} – {wanted.last_day} "
             "(narrow the filter, or export them all)")
    return _table(state, rows), count, href


def _table(state, rows: list[dict]):
    if not rows:
        return html.P(str(Label("Nothing in this period.", "此期间无记录。")), className="placeholder")
    head = html.Thead(html.Tr([html.Th(str(h)) for h in HEADINGS]))
    body = [html.Tr(className=f"audit-{row['outcome']}", children=[
        html.Td(row["time"].astimezone(CITY_TZ).strftime("%Y-%m-%d %H:%M:%S"), className="audit-time"),
        html.Td([html.Div(row["actor"]), html.Div(_roles(row["roles"]), className="audit-dim")]),
        html.Td(str(ACTION_LABELS.get(row["action"], row["action"])), title=row["action"]),
        html.Td(row["target"] or ""),
        html.Td(_org(state, row["scope_code"])),
        html.Td(str(OUTCOME_LABELS.get(row["outcome"], row["outcome"])), className="audit-outcome"),
        html.Td(row["reason"] or ""),
        html.Td(_change(row["before"], row["after"])),
        html.Td(row["source_address"] or ""),
    ]) for row in rows]
    return html.Table(className="data-table", id="audit-table", children=[head, html.Tbody(body)])


def _roles(roles: list[str]) -> str:
    return ", ".join(str(USER_ROLE_LABELS.get(r, r)) for r in roles or ())


def _org(state, code: str | None) -> str:
    if code is None:
        return ""
    return state.city.org_name(code) if code else state.city.name


def _change(before, after) -> str:
    """'field: old → new' for what a change touched (before and after are stored as JSON)."""
    if before is None and after is None:
        return ""
    before, after = before or {}, after or {}
    keys = list(dict.fromkeys([*before, *after]))
    return "; ".join(f"{k}: {_text(before.get(k))} → {_text(after.get(k))}" if k in before else
                     f"{k}: {_text(after.get(k))}" for k in keys)


def _text(value) -> str:
    return "–" if value is None else value if isinstance(value, str) else orjson.dumps(value).decode()


# --- the export -------------------------------------------------------------------------------------
@export(EXPORT_PATH, PAGE.roles, "the audit trail as CSV (authorizes the scope; audited)")
def export_csv():
    """`/audit.csv?scope=…&from=…&to=…&action=…&outcome=…&actor=…`: the selection as CSV (UTF-8
    with a byte-order mark, which Excel and WPS need to read Chinese), streamed; audited."""
    asked = authorized_export(PAGE, AuditAction.AUDIT_EXPORT, EXPORT_PATH, AuditFilter.from_params)
    if isinstance(asked, Response):
        return asked
    state, scope, wanted = asked
    columns = list(state.queries.AUDIT_COLUMNS)

    def rows():
        for row in state.queries.audit_export(scope, wanted):
            row["time"] = row["time"].astimezone(CITY_TZ).isoformat()
            row["roles"] = " ".join(row["roles"] or ())
            yield [row[c] for c in columns]

    return csv_response(f"audit-{scope.code or 'city'}-{wanted.first_day}-{wanted.last_day}.csv", columns,
                        rows())

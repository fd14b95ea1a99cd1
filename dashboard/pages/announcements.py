"""Announcements (通知公告, `/announcements`): a dispatcher, leader or admin writes one to an org unit
of their scope (a district, street, community or grid), and every terminal of its members receives
it; the list beside shows those sent within the scope, each with how many of its recipients have
read it and who has not yet. The read counts follow the terminals' receipts live (the page's feed
carries each receipt; the counts come from the database, where only a recipient's receipt counts).

Sending goes through dashboard/commands.py (dashboard/announcements.py: authorized for the org
unit chosen, audited); the list is authorized again for the page's scope in its callback.
"""
from __future__ import annotations

from dash import Input, Output, State, dcc, html
from flask import request

from core.catalogue import Label
from core.city import CITY_TZ
from core.roles import UserRole
from dashboard import live_ui
from dashboard.announcements import (
    ANNOUNCE,
    BODY_MAX,
    TITLE_MAX,
    Announce,
    Sent,
    sent_in,
    unread_by_announcement,
)
from dashboard.authz import Scope, authorize, current_identity
from dashboard.declarations import callback, page
from dashboard.feeds import Feed
from dashboard.state import app_state
from telemetry import live
from telemetry.notices import ANNOUNCEMENT_DAYS

SHOWN = 20                       # the latest announcements listed
UNREAD_SHOWN = 30                # of each, the members not yet read, by name


def wire_read(q, c: live.ReadChange) -> list:
    return [c.announcement_id, c.terminal_id]


FEED = Feed("announcements", wire={"read": wire_read}, snapshot=lambda q, scope: {})


def layout(state, scope: Scope, kiosk: bool = False):
    targets = [o for o in state.queries.org_options(scope.code) if o["value"]]
    if scope.code and len(scope.code) >= 9:          # a street or below: its grids too (a few dozen)
        targets += [{"label": f"    {g.name} · {g.code}", "value": g.code} for g in state.city.grids
                    if scope.covers(g.code) and g.code != scope.code]
    return html.Div(className="admin announcements", id="announcements", children=[
        live_ui.socket("ann", FEED, scope.code),
        dcc.Store(id="ann-scope", data=scope.code),
        dcc.Store(id="ann-reads", data=0),
        html.Div(className="dispatch-head", children=[
            html.H1(str(Label("Announcements", "通知公告"))),
            html.Div(scope.name, className="dispatch-scope"),
            live_ui.badge("ann"),
        ]),
        html.Div(className="admin-columns ann-columns", children=[
            html.Section(className="admin-section", children=[
                html.H2(str(Label("New announcement", "发布通知"))),
                html.Div(className="ann-form", children=[
                    html.Label([str(Label("To every terminal of", "发送范围")),
                                dcc.Dropdown(id="ann-org", options=targets,
                                             value=targets[0]["value"] if targets else None, clearable=False)]),
                    html.Label([str(Label("Title", "标题")),
                                dcc.Input(id="ann-title", maxLength=TITLE_MAX, placeholder=str(Label(
                                    "e.g. Typhoon warning: check the drains", "例：台风预警，请检查排水")))]),
                    html.Label([str(Label("Text", "内容")),
                                dcc.Textarea(id="ann-body", maxLength=BODY_MAX, className="ann-body")]),
                    html.Label([str(Label("Keep for", "有效期")),
                                dcc.Dropdown(id="ann-days", value=3, clearable=False,
                                             options=[{"label": f"{d} day{'s' if d > 1 else ''} {d} 天", "value": d}
                                                      for d in ANNOUNCEMENT_DAYS])]),
                    html.Button(str(Label("Send", "发送")), id="ann-send", className="button"),
                ]),
                html.Div(id="ann-result", className="admin-result", role="status"),
            ]),
            html.Section(className="admin-section", children=[
                html.H2(str(Label("Sent, and read", "已发送与阅读情况"))),
                html.Div(id="ann-list"),
            ]),
        ]),
    ])


PAGE = page("/announcements", Label("Announcements", "通知公告"),
            frozenset({UserRole.DISPATCHER, UserRole.LEADER, UserRole.ADMIN}), layout, feed=FEED, order=40)


@callback(Output("ann-result", "children"), Output("ann-title", "value"), Output("ann-body", "value"),
          Input("ann-send", "n_clicks"), State("ann-org", "value"), State("ann-title", "value"),
          State("ann-body", "value"), State("ann-days", "value"), prevent_initial_call=True,
          roles=ANNOUNCE.roles, why="send an announcement (authorized for the org unit chosen)", changes=(ANNOUNCE,))
def send(_clicks, org_code, title, body, days):
    state = app_state()
    if not org_code or not (title or "").strip() or not (body or "").strip():
        return html.Span(str(Label("Choose who receives it, and write a title and a text.",
                                   "请选择发送范围，并填写标题和内容。")), className="admin-refused"), title, body
    result = state.commands.execute(current_identity(), Announce(org_code, title, body, int(days or 3)),
                                    request.remote_addr)
    if not result.ok:
        return html.Span(f"Refused: {result.reason}", className="admin-refused"), title, body
    return html.Span(f"✓ Sent: {result.summary} ({result.reply})", className="admin-done"), "", ""


@callback(Output("ann-list", "children"), Input("ann-reads", "data"), Input("ann-result", "children"),
          State("ann-scope", "data"),
          roles=PAGE.roles, why="the announcements sent in the scope, with their read counts (authorizes the scope)")
def show(_reads, _sent, scope_code):
    """The latest announcements of the scope with their read counts (authorized again: a callback is
    a request of its own, and the scope came from the browser)."""
    state = app_state()
    decision = authorize(state.city, current_identity(), PAGE, scope_code or "")
    if not decision:
        return html.P(decision.reason, className="refusal")
    sent = sent_in(state.queries.rows, decision.scope.code, SHOWN)
    if not sent:
        return html.P(str(Label("Nothing sent in this scope yet.", "本范围内尚无通知。")), className="empty")
    unread = unread_by_announcement(state.queries.rows, [a.announcement_id for a in sent], UNREAD_SHOWN)
    return [_item(state, a, unread.get(a.announcement_id, [])) for a in sent]


def _item(state, a: Sent, unread: list[str]):
    share = a.read / a.recipients if a.recipients else 0.0
    names = [_member_name(state, t) for t in unread]
    left = a.recipients - a.read
    return html.Article(className="ann-item", id=f"ann-{a.announcement_id}", children=[
        html.Div(className="ann-title", children=[html.Strong(a.title), html.Span(f" · {a.org_name}")]),
        html.Div(a.body, className="ann-text"),
        html.Div(className="ann-meta", children=[
            f"{a.sender} · {a.created_at.astimezone(CITY_TZ):%m-%d %H:%M} · ",
            (f"sent {a.published_at.astimezone(CITY_TZ):%H:%M:%S}" if a.published_at
             else str(Label("waiting for the broker", "等待发送"))),
            f" · until {a.expires_at.astimezone(CITY_TZ):%m-%d %H:%M}"]),
        html.Div(className="ann-read", children=[
            html.Span(f"read {a.read} / {a.recipients}", className="ann-count"),
            html.Span(className="ann-bar", children=html.Span(style={"width": f"{100 * share:.0f}%"})),
            html.Span(f"{100 * share:.0f}%", className="ann-share"),
        ]),
        html.Details(className="ann-unread", children=[
            html.Summary(f"not read yet: {left}"),
            html.Div(", ".join(names) + (f" … and {left - len(names)} more" if left > len(names) else ""))])
        if left else None,
    ])


def _member_name(state, terminal_id: str) -> str:
    member = state.queries.member(terminal_id)
    return f"{member.name} ({state.city.org_name(member.grid_code)})" if member else terminal_id


live_ui.follow_frames("ann", "announcementsLive", Output("ann-reads", "data"), PAGE.roles)

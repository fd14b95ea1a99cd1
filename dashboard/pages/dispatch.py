"""The dispatcher console, first part: what a dispatcher must see and act on now, live.

- open device alarms of the scope, most severe first, each with "Acknowledge" (the first command
  through dashboard/commands.py: authorized, written and audited);
- members by status (online / silent / offline, SOS first);
- task acknowledgements from the terminals as they arrive.
Its feed takes statuses, task acknowledgements and alarms, never the 2 Hz fixes. Picking the
nearest available member and sending tasks arrive with the dispatch issue.
"""
from __future__ import annotations

from dash import ALL, ClientsideFunction, Input, Output, State, callback, clientside_callback, ctx, html, no_update
from dash_socketio import DashSocketIO
from flask import request

from dashboard.authz import Scope, UserRole, current_identity
from dashboard.commands import AcknowledgeAlarm
from dashboard.feeds import Feed
from dashboard.pages import Page
from dashboard.pages.wall import wire_alarm, wire_alarm_ack, wire_status
from dashboard.state import app_state
from telemetry import live
from telemetry.catalogue import Label


def wire_task_ack(q, c: live.TaskAckChange) -> dict:
    member = q.member(c.terminal_id)
    return {"task_id": c.task_id, "terminal_id": c.terminal_id, "name": member.name if member else c.terminal_id,
            "action": c.action, "note": c.note, "t": c.t}


def snapshot(q, scope: Scope) -> dict:
    in_scope = q.members(scope)
    states = {m.terminal_id: m for m in q.members_live(in_scope)}
    members = []
    for m in in_scope:
        known = states.get(m.terminal_id)   # None: never heard of since the live state began
        members.append({"terminal_id": m.terminal_id, "name": m.name, "role": m.role.value,
                        "home_grid_code": m.grid_code, "state": known.state if known else None,
                        "state_t": known.state_t if known else 0, "sos": known.sos if known else False})
    return {"members": members, "alarms": [wire_alarm(q, a) for a in q.open_alarms(scope)]}


FEED = Feed("dispatch", wire={"status": wire_status, "task_ack": wire_task_ack, "alarm": wire_alarm,
                              "alarm_ack": wire_alarm_ack}, snapshot=snapshot)


def layout(state, scope: Scope, kiosk: bool = False):
    return html.Div(className="dispatch", id="dispatch", children=[
        DashSocketIO(id="dispatch-socket", url=f"/live?feed=dispatch&scope={scope.code}",
                     eventNames=["snapshot", "frame"],
                     options={"transports": ["websocket"], "auth": {"feed": "dispatch", "scope": scope.code}}),
        html.Div(className="dispatch-head", children=[
            html.H1(str(Label("Dispatcher console", "调度台"))),
            html.Div(scope.name, id="dispatch-scope-name", className="dispatch-scope"),
            html.Span("connecting…", id="dispatch-conn", className="wall-conn down"),
            html.Div(id="dispatch-result", className="dispatch-result", role="status"),
        ]),
        html.Div(className="dispatch-columns", children=[
            html.Section(className="wall-panel", children=[html.H2(str(Label("Open alarms", "告警"))),
                                                           html.Div(id="dispatch-alarms")]),
            html.Section(className="wall-panel", children=[html.H2(str(Label("Members", "人员状态"))),
                                                           html.Div(id="dispatch-members")]),
            html.Section(className="wall-panel", children=[html.H2(str(Label("Task acknowledgements", "任务回执"))),
                                                           html.Div(id="dispatch-acks")]),
        ]),
    ])


PAGE = Page("/dispatch", Label("Dispatch", "调度"), frozenset({UserRole.DISPATCHER, UserRole.ADMIN}), layout, FEED)


@callback(Output("dispatch-result", "children"),
          Input({"type": "dispatch-ack", "alarm": ALL, "sensor": ALL}, "n_clicks"), prevent_initial_call=True)
def acknowledge(clicks):
    """A dispatcher acknowledges an alarm: through the command module, which authorizes and audits."""
    if not ctx.triggered_id or not any(clicks or ()):
        return no_update
    command = AcknowledgeAlarm(ctx.triggered_id["sensor"], ctx.triggered_id["alarm"])
    result = app_state().commands.execute(current_identity(), command, request.remote_addr)
    return (f"✓ {Label('acknowledged', '已确认')}: {result.summary}" if result.ok
            else f"✗ {result.summary}: {result.reason}")


clientside_callback(
    ClientsideFunction(namespace="gcc", function_name="dispatchLive"),
    Output("dispatch-alarms", "children"), Output("dispatch-members", "children"), Output("dispatch-acks", "children"),
    Output("dispatch-socket", "url"),
    Input("dispatch-socket", "data-snapshot"), Input("dispatch-socket", "data-frame"),
    State("dispatch-socket", "url"),
    prevent_initial_call=True,
)

clientside_callback(
    ClientsideFunction(namespace="gcc", function_name="connection"),
    Output("dispatch-conn", "children"), Output("dispatch-conn", "className"),
    Input("dispatch-socket", "connected"),
)

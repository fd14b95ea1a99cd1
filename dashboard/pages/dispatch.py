"""The dispatcher console (next wave: nearest available member, task over MQTT, acknowledgement)."""
from __future__ import annotations

from dash import html


def layout(scope_code: str = "", kiosk: bool = False):
    return html.Div(className="placeholder", id="dispatch", children=[
        html.H1("Dispatcher console 调度台"),
        html.P("Dispatching tasks to the nearest available grid member arrives with the dispatch issue."),
    ])

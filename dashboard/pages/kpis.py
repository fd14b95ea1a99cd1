"""The leaders' KPIs (next wave: closure and on-time rates, time to accept/close, rankings)."""
from __future__ import annotations

from dash import html


def layout(scope_code: str = "", kiosk: bool = False):
    return html.Div(className="placeholder", id="kpis", children=[
        html.H1("Leaders' KPIs 考核指标"),
        html.P("Closure and on-time rates, time to accept and close, patrol coverage and rankings of grids, "
               "communities and streets arrive with the KPI issue."),
    ])

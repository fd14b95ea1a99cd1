"""The leaders' KPIs (next wave: closure and on-time rates, time to accept/close, rankings)."""
from __future__ import annotations

from dash import html

from dashboard.authz import Scope, UserRole
from dashboard.pages import Page
from telemetry.catalogue import Label


def layout(state, scope: Scope, kiosk: bool = False):
    return html.Div(className="placeholder", id="kpis", children=[
        html.H1(str(Label("Leaders' KPIs", "考核指标"))),
        html.P(f"{scope.name}: closure and on-time rates, time to accept and close, patrol coverage and rankings of "
               "grids, communities and streets arrive with the KPI issue."),
    ])


PAGE = Page("/kpis", Label("KPIs", "考核"), frozenset({UserRole.LEADER, UserRole.ADMIN}), layout)

"""The wall display: a big screen nobody touches. Live map of members, sensors in alarm and
incidents over the grids, a heatmap, headline counters, a ticker and the queue of open items."""
from __future__ import annotations

import dash_leaflet as dl
from dash import ClientsideFunction, Input, Output, State, clientside_callback, dcc, html
from dash_extensions.javascript import Namespace
from dash_socketio import DashSocketIO

from dashboard import context

ns = Namespace("gcc", "wall")
EMPTY = {"type": "FeatureCollection", "features": []}
LEGEND = [("#30d158", "online 在线"), ("#ff9f0a", "silent 失联"), ("#8e8e93", "offline 离线"),
          ("#ff3b30", "critical 紧急"), ("#ff9500", "high 较高"), ("#ffd60a", "medium 一般")]


def layout(scope_code: str = "", kiosk: bool = False):
    q = context.queries()
    scope = q.scope(scope_code) or q.scope("")
    layers = [dl.GeoJSON(id="wall-grids", data=q.grids_geojson(scope), style=ns("gridStyle"), hideout={"counts": {}}),
              dl.GeoJSON(id="wall-heat", data=EMPTY, style=ns("heatStyle"), interactive=False),
              dl.GeoJSON(id="wall-incidents", data=EMPTY, pointToLayer=ns("reportMarker")),
              dl.GeoJSON(id="wall-members", data=EMPTY, pointToLayer=ns("memberMarker")),
              dl.GeoJSON(id="wall-alarms", data=EMPTY, pointToLayer=ns("alarmMarker"))]
    if context.TILE_URL:
        layers.insert(0, dl.TileLayer(url=context.TILE_URL))
    return html.Div(className="wall", id="wall", children=[
        # the scope in the URL too: a new scope means a new URL, so the component opens a new socket
        DashSocketIO(id="wall-socket", url=f"/live?scope={scope.code}", eventNames=["snapshot", "frame", "heat"],
                     options={"transports": ["websocket"], "auth": {"scope": scope.code}}),
        html.Div(className="wall-headline", children=[
            html.Div(id="wall-counters", style={"display": "contents"}),
            html.Div(className="wall-scope", children=[html.Div(scope.name, id="wall-scope-name"),
                                                       html.Span("connecting…", id="wall-conn", className="wall-conn down")]),
        ]),
        html.Div(className="wall-map-pane", children=[
            dl.Map(id="wall-map", className="wall-map", preferCanvas=True, bounds=q.bounds(scope), trackViewport=False, zoomSnap=0.25,
                   zoomControl=not kiosk, attributionControl=False, children=layers),
            html.Div(className="wall-legend", children=[html.Span([html.I(style={"background": c}), label])
                                                        for c, label in LEGEND]),
            dcc.RadioItems(id="wall-window", className="wall-window", value="today", inline=True,
                           options=[{"label": " today 今日 ", "value": "today"}, {"label": " last hour 近1小时", "value": "hour"}]),
        ]),
        html.Div(className="wall-side", children=[
            html.Div(className="wall-panel", children=[html.H2("Open items · by severity and age 待办队列"),
                                                       html.Div(id="wall-queue")]),
            html.Div(className="wall-panel", children=[html.H2("Live · alarms and reports 实时动态"),
                                                       html.Div(id="wall-ticker")]),
        ]),
    ])


clientside_callback(
    ClientsideFunction(namespace="gcc", function_name="applyLive"),
    Output("wall-members", "data"), Output("wall-alarms", "data"), Output("wall-incidents", "data"),
    Output("wall-grids", "hideout"), Output("wall-counters", "children"), Output("wall-queue", "children"),
    Output("wall-ticker", "children"), Output("wall-heat", "data"), Output("wall-socket", "url"),
    Input("wall-socket", "data-snapshot"), Input("wall-socket", "data-frame"),
    State("wall-window", "value"), State("wall-socket", "url"),
    prevent_initial_call=True,
)

clientside_callback(
    ClientsideFunction(namespace="gcc", function_name="applyHeat"),
    Output("wall-heat", "data", allow_duplicate=True),
    Input("wall-socket", "data-heat"), Input("wall-window", "value"),
    prevent_initial_call=True,
)

clientside_callback(
    ClientsideFunction(namespace="gcc", function_name="connection"),
    Output("wall-conn", "children"), Output("wall-conn", "className"),
    Input("wall-socket", "connected"),
)

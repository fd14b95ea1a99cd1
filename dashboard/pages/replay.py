"""Track replay (轨迹回放): a member's stored fixes for a day and time range on the map, played back
with play / pause, speed 1×–20×, a slider and follow mode; stops found with the thresholds chosen
(minimum duration, radius); the member's case work and reports on the track; their home grid's
coverage that day as an overlay (H3 cells walked); distance, time moving, time stopped.
"Who was where at T": every member of the scope at a moment, from the stored fixes.

The server sends the track once, compactly (offsets and coordinates as arrays, read from the
database as columns); drawing its line and playing it happen in the browser (assets/replay.js:
animation frames move the marker along it). Every callback asks authz for the scope, and a member
outside it is refused.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import dash_leaflet as dl
import h3
import numpy as np
from dash import Input, Output, State, dcc, html, no_update
from dash.dependencies import ClientsideFunction

from core.catalogue import Label
from core.city import CITY_TZ
from core.roles import ROLE_LABELS, UserRole
from dashboard.authz import Scope, asked_scope, authorize, current_identity
from dashboard.declarations import callback, clientside_callback, page, query_params
from dashboard.pages.cases import duration
from dashboard.state import app_state
from kpis import tracks

SPEEDS = (1, 2, 5, 10, 20)
WHEREABOUTS_WINDOW = timedelta(minutes=15)       # a fix older than this before T: not known where
EVENT_LABELS = {"accept": "接单", "feedback": "反馈", "start": "开始处置", "reject": "拒单", "verify": "核查",
                "return": "回退", "request_extension": "申请延期"}


def _member_options(state, scope: Scope) -> list[dict]:
    return [{"label": f"{m.name} · {ROLE_LABELS[m.role].zh} · {state.city.org_name(m.grid_code)}",
             "value": m.terminal_id} for m in state.queries.members(scope)]


def layout(state, scope: Scope, kiosk: bool = False, params: dict | None = None):
    params = params or {}
    today = datetime.now(CITY_TZ).date()
    members = _member_options(state, scope)
    chosen = params.get("member") if any(o["value"] == params.get("member") for o in members) else None
    layers = [dl.GeoJSON(id="replay-missed", data=None, style={"weight": 0.5, "color": "#8b9bb0", "fillOpacity": 0.08}),
              dl.GeoJSON(id="replay-walked", data=None, style={"weight": 0.5, "color": "#2ea043", "fillOpacity": 0.4}),
              dl.Polyline(id="replay-line", positions=[], color="#58a6ff", weight=3, opacity=0.8),
              dl.LayerGroup(id="replay-stops"), dl.LayerGroup(id="replay-events"),
              dl.LayerGroup(id="replay-who"),
              dl.CircleMarker(id="replay-marker", center=[0, 0], radius=9, color="#ffd60a", fillColor="#ffd60a",
                              fillOpacity=1, opacity=0)]
    if state.tile_url:
        layers.insert(0, dl.TileLayer(url=state.tile_url))
    return html.Div(className="replay", id="replay", children=[
        html.Div(className="kpis-head", children=[
            html.H1(str(Label("Track replay", "轨迹回放"))),
            html.Div(scope.name, className="dispatch-scope", id="replay-scope-name"),
        ]),
        html.Div(className="audit-controls replay-controls", children=[
            html.Label([str(Label("Member", "网格员")), dcc.Dropdown(id="replay-member", options=members, value=chosen,
                                                                   placeholder=str(Label("choose", "选择")))]),
            html.Label([str(Label("Day", "日期")), dcc.DatePickerSingle(
                id="replay-day", date=params.get("day") or today, max_date_allowed=today, display_format="YYYY-MM-DD",
                first_day_of_week=1)]),
            html.Label([str(Label("From", "起")), dcc.Input(id="replay-from", type="time", value="00:00")]),
            html.Label([str(Label("To", "止")), dcc.Input(id="replay-to", type="time", value="23:59")]),
            html.Label([str(Label("Stop ≥ min", "停留≥分钟")), dcc.Input(id="replay-stop-min", type="number", min=1,
                                                                         max=240, value=3)]),
            html.Label([str(Label("within m", "半径米")), dcc.Input(id="replay-stop-radius", type="number", min=5,
                                                                    max=500, value=30)]),
            html.Button(str(Label("Load", "加载")), id="replay-load", className="button"),
        ]),
        html.Div(className="replay-body", children=[
            html.Div(className="wall-map-pane", children=[
                dl.Map(id="replay-map", className="wall-map", preferCanvas=True, bounds=state.queries.bounds(scope),
                       trackViewport=False,
                       zoomSnap=0.25, attributionControl=False, children=layers),
            ]),
            html.Div(className="replay-side", children=[
                html.Div(className="wall-panel replay-player", children=[
                    html.Div(className="replay-buttons", children=[
                        html.Button("▶ 播放", id="replay-play", className="button", disabled=True,
                                    title="play / pause 播放/暂停"),
                        dcc.Dropdown(id="replay-speed", options=[{"label": f"{s}×", "value": s} for s in SPEEDS],
                                     value=1, clearable=False, className="replay-speed"),
                        dcc.Checklist(id="replay-follow", options=[{"label": str(Label(" follow", " 跟随")),
                                                                    "value": "on"}], value=["on"]),
                        html.Span("–", id="replay-time", className="replay-time"),
                    ]),
                    dcc.Slider(id="replay-slider", min=0, max=1, value=0, step=1, marks=None, updatemode="drag",
                               allow_direct_input=False, className="replay-slider"),
                    html.Div(id="replay-status", className="audit-count", role="status"),
                ]),
                html.Div(id="replay-summary", className="wall-panel replay-summary"),
                html.Div(className="wall-panel replay-who-panel", children=[
                    html.H2(str(Label("Who was where at", "某时刻人员位置"))),
                    html.Div(className="replay-buttons", children=[
                        dcc.Input(id="replay-at", type="datetime-local", step=60,
                                  value=datetime.now(CITY_TZ).strftime("%Y-%m-%dT%H:%M")),
                        html.Button(str(Label("Show", "查看")), id="replay-who-show", className="button")]),
                    html.Div(id="replay-who-list", className="replay-who-list"),
                ]),
            ]),
        ]),
        dcc.Store(id="replay-track"),
    ])


PAGE = page("/replay", Label("Replay", "轨迹回放"), frozenset({UserRole.DISPATCHER, UserRole.LEADER, UserRole.ADMIN}),
            layout, takes_params=True, order=60)


def _authorized(search):
    state, identity = app_state(), current_identity()
    return state, authorize(state.city, identity, PAGE, asked_scope(identity, query_params(search)))


def _moment(day: str | None, hhmm: str | None, fallback: time) -> datetime:
    d = date.fromisoformat((day or "")[:10])
    try:
        t = time.fromisoformat(hhmm) if hhmm else fallback
    except ValueError:
        t = fallback
    return datetime.combine(d, t, CITY_TZ)


@callback(Output("replay-track", "data"), Output("replay-status", "children"), Output("replay-stops", "children"),
          Output("replay-events", "children"), Output("replay-walked", "data"), Output("replay-missed", "data"),
          Output("replay-summary", "children"), Output("replay-slider", "max"), Output("replay-play", "disabled"),
          Input("replay-load", "n_clicks"), State("replay-member", "value"), State("replay-day", "date"),
          State("replay-from", "value"), State("replay-to", "value"), State("replay-stop-min", "value"),
          State("replay-stop-radius", "value"), State("shell-url", "search"), prevent_initial_call=True,
          roles=PAGE.roles, why="a member's track, stops, events and coverage (authorizes the member's org unit)")
def load(_clicks, terminal_id, day, start_hhmm, end_hhmm, stop_min, stop_radius, search):
    """The member's track for the range, its stops, events and coverage (authorized for the scope)."""
    state, decision = _authorized(search)
    keep = (no_update,) * 7
    if not decision:
        return None, decision.reason, *keep
    member = state.queries.member(terminal_id or "")
    if member is None or not decision.scope.covers(member.grid_code):
        return None, str(Label("Choose a member of this org unit.", "请选择本单位的网格员。")), *keep
    try:
        start = _moment(day, start_hhmm, time(0, 0))
        end = _moment(day, end_hhmm, time(23, 59)) + timedelta(minutes=1)
    except ValueError:
        return None, str(Label("Choose a day.", "请选择日期。")), *keep
    track = state.queries.track(terminal_id, start.astimezone(timezone.utc), end.astimezone(timezone.utc))
    if not len(track):
        return None, f"{member.name}: {Label('no fixes stored in this range', '该时段无定位记录')}", [], [], None, \
            None, "", 1, True
    stop_s = max(1.0, float(stop_min or 3)) * 60
    radius = max(5.0, float(stop_radius or 30))
    summary = tracks.summary(track, stop_s, radius)
    grid = state.city.grid_by_code[member.grid_code]
    cells = tracks.grid_cells(grid.boundary)
    covered, visited = tracks.coverage(track, grid.boundary, cells)
    first, last = track.time(0), track.time(-1)
    # compact: seconds from the first fix to 0.1 s, coordinates to 6 decimals (0.1 m)
    data = {"t0": float(track.t[0]) * 1000, "ts": np.round(track.t - track.t[0], 1).tolist(),
            "lat": np.round(track.lat, 6).tolist(), "lon": np.round(track.lon, 6).tolist()}
    stop_markers = [dl.CircleMarker(center=[s.lat, s.lon], radius=7, color="#ff9f0a", fillOpacity=0.6, children=[
        dl.Tooltip(f"{Label('stop', '停留')} {s.start.astimezone(CITY_TZ):%H:%M}–{s.end.astimezone(CITY_TZ):%H:%M} "
                   f"({s.seconds / 60:.0f} min)")]) for s in summary.stops]
    events = state.queries.track_events(terminal_id, start, end)
    event_markers = [dl.CircleMarker(center=_at(track, t), radius=6, color="#ff453a", fillOpacity=0.9, children=[
        dl.Tooltip(f"{t.astimezone(CITY_TZ):%H:%M} · {'案件' if kind == 'case' else '上报'} {ref} · "
                   f"{EVENT_LABELS.get(what, what)}")]) for t, kind, ref, what in events]
    status = f"{member.name} · {len(track):,} {Label('fixes', '个定位点')} · " \
             f"{first.astimezone(CITY_TZ):%H:%M}–{last.astimezone(CITY_TZ):%H:%M}"
    return (data, status, stop_markers, event_markers, _cells_geojson(visited), _cells_geojson(cells - visited),
            _summary(state, member, grid, summary, covered, events), data["ts"][-1] or 1, False)


def _at(track: tracks.Track, t: datetime) -> list[float]:
    """Where the track was at t: its last fix at or before t (or the first)."""
    i = max(0, int(np.searchsorted(track.t, t.timestamp(), side="right")) - 1)
    return [float(track.lat[i]), float(track.lon[i])]


def _cells_geojson(cells: set[str]) -> dict:
    features = []
    for cell in cells:
        ring = [[lon, lat] for lat, lon in h3.cell_to_boundary(cell)]
        features.append({"type": "Feature", "properties": {"cell": cell},
                         "geometry": {"type": "Polygon", "coordinates": [ring + ring[:1]]}})
    return {"type": "FeatureCollection", "features": features}


def _summary(state, member, grid, summary: tracks.Summary, covered: tracks.Coverage, events) -> list:
    def row(label: Label, value: str, key: str):
        return html.Div(className="replay-fact", id=f"replay-fact-{key}",
                        children=[html.Span(str(label), className="wall-tile-sub"), html.Span(value)])

    return [
        html.H2(f"{member.name} · {ROLE_LABELS[member.role]}"),
        row(Label("Distance", "里程"), f"{summary.distance_m / 1000:.2f} km", "distance"),
        row(Label("Moving", "行进"), duration(summary.moving_s), "moving"),
        row(Label("Stopped", "停留"), f"{duration(summary.stopped_s)} · {len(summary.stops)} {Label('stops', '次')}",
            "stopped"),
        row(Label("Grid walked", "网格覆盖"), f"{100 * covered.share:.0f} % ({covered.visited}/{covered.cells} "
                                            f"{Label('cells', '格')}) · {grid.name}", "coverage"),
        row(Label("In the grid", "在格时长"), duration(covered.seconds_in_grid), "in-grid"),
        row(Label("Inspected", "已巡查"), str(Label("yes", "是")) if covered.inspected else str(Label("no", "否")),
            "inspected"),
        row(Label("Case work and reports", "处置与上报"), f"{len(events)}", "events"),
    ]


@callback(Output("replay-who", "children"), Output("replay-who-list", "children"),
          Input("replay-who-show", "n_clicks"), State("replay-at", "value"), State("shell-url", "search"),
          prevent_initial_call=True,
          roles=PAGE.roles, why="who was where at a moment (authorizes the scope)")
def who_was_where(_clicks, at_text, search):
    """Every member of the scope at the moment asked, from the stored fixes (authorized for the scope)."""
    state, decision = _authorized(search)
    if not decision:
        return [], decision.reason
    try:
        at = datetime.fromisoformat(at_text).replace(tzinfo=CITY_TZ)
    except (TypeError, ValueError):
        return [], str(Label("Choose a moment.", "请选择时刻。"))
    members = state.queries.members(decision.scope)
    where = state.queries.whereabouts_at([m.terminal_id for m in members], at.astimezone(timezone.utc),
                                         WHEREABOUTS_WINDOW)
    markers, rows = [], []
    for m in members:
        if m.terminal_id not in where:
            continue
        t, lat, lon = where[m.terminal_id]
        label = f"{m.name} · {ROLE_LABELS[m.role].zh} · {t.astimezone(CITY_TZ):%H:%M:%S}"
        markers.append(dl.CircleMarker(center=[lat, lon], radius=6, color="#30d158", fillOpacity=0.8,
                                       children=[dl.Tooltip(label)]))
        rows.append(html.Div(label, className="replay-who-row"))
    head = html.P(f"{len(rows)} / {len(members)} {Label('members located at', '名网格员有定位')} "
                  f"{at:%Y-%m-%d %H:%M} ({Label('last fix within', '取此前')} {WHEREABOUTS_WINDOW.seconds // 60} min)",
                  className="audit-count", id="replay-who-count")
    return markers, [head, *rows[:200]]


clientside_callback(ClientsideFunction("gcc", "replayControl"),
                    Output("replay-play", "children"), Output("replay-line", "positions"),
                    Output("replay-map", "viewport"),
                    Input("replay-play", "n_clicks"), Input("replay-speed", "value"), Input("replay-slider", "value"),
                    Input("replay-track", "data"), Input("replay-follow", "value"),
                    roles=PAGE.roles, why="the player (in the browser; no data)")

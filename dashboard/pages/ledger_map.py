"""The community map and its 3D view (社区地图与三维, issue 26): a community's buildings from their
footprints and its urban parts, drawn from our own data.

Who: the basic-data page's roles (`LEDGER_ROLES`), over the org selector's scope: a community or
one of its grids (a wider scope lists its communities to choose from). Every callback authorizes
the identity and the scope again; a building is opened only if it lies in the scope.

- **The map** (dash-leaflet, as the wall's; the city's tiles if configured, none needed): each
  building's footprint coloured by what the viewer chooses — its houses' main use, how many of
  its residents need help first (counts, never names), the share of its houses occupied, or its
  height — and the parts as points coloured by state.
- **The 3D view** (Plotly Mesh3d, offline: no tile, no service): the community's ground, each
  building extruded by its floors from its footprint (a trace per building), coloured as on the
  map, the camera fitted to the community.
- A click on a building (on either) opens its panel below: the basic-data page's floors × houses
  (dashboard.pages.ledger.building_grid, marked and masked as there).
"""
from __future__ import annotations

import dash_leaflet as dl
import plotly.graph_objects as go
from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from flask import current_app

from core.catalogue import Label
from core.ledger import HOUSE_USE_LABELS, THING_KIND_LABELS, THING_STATE_LABELS, HouseUse, ThingKind, ThingState
from core.orgcodes import Level
from dashboard.authz import Scope, asked_scope, authorize, current_identity
from dashboard.declarations import callback, page, query_params
from dashboard.kpi_figures import plot_text
from dashboard.ledger_commands import LEDGER_ROLES
from dashboard.pages import ledger as ledger_page
from dashboard.state import app_state
from dashboard.vocabulary import HOUSE_USE_COLOURS, SEQUENTIAL_COLOURS, THING_STATE_COLOURS
from ledger.geometry import FLOOR_HEIGHT_M, BuildingShape, PlaceReads, building_mesh, flat, to_metres

TITLE = Label("Community map and 3D view", "社区地图与三维")
HEIGHT_SCALE = 3      # a community is ~1 km across and its towers ~60 m: at true scale the view reads flat
_EXTENSION = "gcc.ledger_places"
NO_HOUSES = "#3a3a3c"
COLOUR_BY = {"use": Label("main use", "主要用途"), "help": Label("needs help first", "需优先关照人数"),
             "occupancy": Label("occupancy", "入住率"), "height": Label("height", "楼高")}
# (upper bound, label) of each band of a banded colouring, coloured with SEQUENTIAL_COLOURS in order
BANDS = {"help": ((0, Label("none", "无")), (2, Label("1–2", "1–2 人")), (5, Label("3–5", "3–5 人")),
                  (None, Label("6 or more", "6 人以上"))),
         "occupancy": ((0.5, Label("under 50 %", "低于 50%")), (0.8, Label("50–80 %", "50–80%")),
                       (0.95, Label("80–95 %", "80–95%")), (None, Label("95 % or more", "95% 以上"))),
         "height": ((3, Label("1–3 floors", "1–3 层")), (6, Label("4–6 floors", "4–6 层")),
                    (11, Label("7–11 floors", "7–11 层")), (18, Label("12–18 floors", "12–18 层")),
                    (None, Label("19 floors or more", "19 层以上")))}
_BAND_COLOURS = {"help": ("#48484a", "#ffd60a", "#ff9f0a", "#ff3b30"),
                 "occupancy": SEQUENTIAL_COLOURS[:4], "height": SEQUENTIAL_COLOURS[:5]}
_PART_RADIUS = dict(zip(ThingKind, (6, 5, 4, 5, 4, 6), strict=True))
_GRAPH = {"displaylogo": False, "displayModeBar": False}


def places() -> PlaceReads:
    found = current_app.extensions.get(_EXTENSION)
    if found is None:
        state = app_state()
        found = current_app.extensions[_EXTENSION] = PlaceReads(state.city, state.settings.pg_dsn)
    return found


def _drawable(scope: Scope) -> bool:
    """A community or a grid: what one map and one 3D view draw."""
    return len(scope.code) >= Level.COMMUNITY.code_length


def _ground(state, scope: Scope):
    """The community's (or the grid's) boundary: the 3D view's ground and the map's outline."""
    area = state.city.grid_by_code.get(scope.code) or state.city.org_by_code.get(scope.code)
    shape = area.boundary
    if shape.geom_type == "MultiPolygon":
        shape = max(shape.geoms, key=lambda g: g.area)
    return shape


# --- the layout ------------------------------------------------------------------------------------

def layout(state, scope: Scope, kiosk: bool = False):
    head = html.Div(className="dispatch-head", children=[
        html.H1(str(TITLE)), html.Div(scope.name, id="ledger-map-scope", className="dispatch-scope"),
        ledger_page.section_links(scope, "/ledger/map", "ledger-map-links")])
    if not _drawable(scope):
        return html.Div(className="kpis ledger-map", id="ledger-map", children=[head, _communities(state, scope)])
    ground = _ground(state, scope)
    (west, south, east, north) = ground.bounds
    outline = [(lat, lon) for lon, lat in ground.exterior.coords]
    layers = [dl.Polygon(positions=outline, color="#8e8e93", weight=2, fill=False, interactive=False),
              dl.LayerGroup(_parts(scope), id="ledger-map-parts"), dl.LayerGroup(id="ledger-map-buildings")]
    if state.tile_url:
        layers.insert(0, dl.TileLayer(url=state.tile_url))
    return html.Div(className="kpis ledger-map", id="ledger-map", children=[
        head,
        html.Div(id="ledger-map-controls", style={"display": "flex", "alignItems": "center", "flexWrap": "wrap",
                                                  "gap": "8px", "margin": "6px 0"}, children=[
            html.Span(str(Label("Colour buildings by", "楼栋着色")), style={"marginRight": "8px"}),
            dcc.RadioItems(id="ledger-map-colour", value="use", inline=True, inputStyle={"marginRight": "4px"},
                           labelStyle={"marginRight": "14px", "display": "inline-flex", "flexDirection": "row",
                                       "alignItems": "center", "color": "var(--text)"},
                           options=[{"label": str(v), "value": k} for k, v in COLOUR_BY.items()]),
            html.Div(id="ledger-map-legend", className="audit-dim")]),
        html.Div(id="ledger-map-note", className="audit-dim"),
        dcc.Store(id="ledger-map-3d-ids"),
        html.Div(className="admin-columns", style={"gridTemplateColumns": "minmax(0, 1fr) minmax(0, 1fr)"}, children=[
            html.Section(className="wall-panel", children=[
                html.H2(str(Label("Map", "地图"))),
                dl.Map(layers, id="ledger-map-leaflet", bounds=[[south, west], [north, east]], trackViewport=False,
                       style={"height": "520px", "background": "#1c1c1e"}),
                _part_legend()]),
            html.Section(className="wall-panel", children=[
                html.H2(str(Label("3D view", "三维视图"))),
                html.Div(str(Label(f"heights × {HEIGHT_SCALE}", f"高度放大 {HEIGHT_SCALE} 倍")), className="audit-dim"),
                dcc.Graph(id="ledger-map-3d", config=_GRAPH, style={"height": "560px"})]),
        ]),
        html.Section(className="wall-panel", children=[
            html.H2(str(Label("Building", "楼栋"))),
            html.Div(str(Label("click a building on the map or in the 3D view", "在地图或三维视图中点击楼栋")),
                     id="ledger-map-panel", className="audit-dim")]),
    ])


PAGE = page("/ledger/map", TITLE, LEDGER_ROLES, layout, order=67, nav=False)


def _communities(state, scope: Scope):
    """A wider scope: its communities to choose from (each a link scoping the page to it)."""
    found = [c for c in state.city.communities if scope.covers(c.code)]
    return html.Section(className="wall-panel", children=[
        html.H2(str(Label("Choose a community", "请选择社区"))),
        html.Div(id="ledger-map-communities", style={"display": "flex", "flexWrap": "wrap", "gap": "8px"}, children=[
            dcc.Link(c.name, href=f"{PAGE.path}?scope={c.code}", className="button small") for c in found])])


def _parts(scope: Scope) -> list:
    """Each part a point coloured by its state: one in order small and dim (a street has hundreds of
    lamps and covers), one damaged, missing or under repair larger, outlined: what needs work shows."""
    return [dl.CircleMarker(center=[p.lat, p.lon], radius=2.5 if p.state == ThingState.GOOD else
                            _PART_RADIUS.get(p.kind, 4) + 1, weight=0 if p.state == ThingState.GOOD else 1.5,
                            color="#f2f2f7", className="ledger-map-part",
                            fillColor=THING_STATE_COLOURS.get(p.state, "#8e8e93"),
                            fillOpacity=0.55 if p.state == ThingState.GOOD else 0.95,
                            children=dl.Tooltip(f"{THING_KIND_LABELS[ThingKind(p.kind)]} · "
                                                f"{THING_STATE_LABELS[ThingState(p.state)]} · {p.thing_id}"))
            for p in places().parts(scope)]


def _part_legend():
    return html.Div(className="audit-dim", style={"marginTop": "6px"}, children=[
        str(Label("Parts", "部件")), ": ", *[html.Span([html.Span("●", style={"color": THING_STATE_COLOURS[s]}),
                                                       f" {THING_STATE_LABELS[s]}  "]) for s in ThingState]])


# --- colours -------------------------------------------------------------------------------------

def _band(mode: str, value) -> int:
    for n, (upper, _) in enumerate(BANDS[mode]):
        if upper is None or value <= upper:
            return n
    return len(BANDS[mode]) - 1


def colour_of(mode: str, building: BuildingShape) -> str:
    """The building's colour in the chosen colouring (no houses in the ledger: grey)."""
    if mode == "height":
        return _BAND_COLOURS[mode][_band(mode, building.floors)]
    if building.main_use is None:
        return NO_HOUSES
    if mode == "help":
        return _BAND_COLOURS[mode][_band(mode, building.needs_help)]
    if mode == "occupancy":
        return _BAND_COLOURS[mode][_band(mode, building.occupancy)]
    return HOUSE_USE_COLOURS[building.main_use]


def legend(mode: str) -> list:
    entries = ([(HOUSE_USE_COLOURS[u], HOUSE_USE_LABELS[u]) for u in HouseUse] if mode == "use" else
               [(c, label) for c, (_, label) in zip(_BAND_COLOURS[mode], BANDS[mode], strict=True)])
    if mode != "height":
        entries.append((NO_HOUSES, Label("no houses in the ledger", "无房屋数据")))
    return [html.Span([html.Span(style={"background": c, "display": "inline-block", "width": "12px", "height": "12px",
                                        "borderRadius": "2px", "marginRight": "4px"}), str(label)],
                      style={"marginRight": "12px", "whiteSpace": "nowrap"}) for c, label in entries]


def _about(b: BuildingShape) -> str:
    return (f"{b.floors} {Label('floors', '层')} · {b.house_count} {Label('houses', '户')} · {b.residents} "
            f"{Label('residents', '人')} · {b.needs_help} {Label('need help first', '需优先关照')}")


# --- drawing -------------------------------------------------------------------------------------

def map_buildings(buildings: list[BuildingShape], mode: str) -> list:
    return [dl.Polygon(positions=[(lat, lon) for lon, lat in b.ring], color=colour_of(mode, b), weight=2,
                       fillColor=colour_of(mode, b), fillOpacity=0.9, className="ledger-map-building",
                       id={"type": "ledger-map-building", "building": b.building_id},
                       children=dl.Tooltip([html.Bdi(ledger_page._plain(b.name)), html.Br(), _about(b)]))
            for b in buildings]


def view_3d(ground, buildings: list[BuildingShape], mode: str) -> go.Figure:
    """The ground and a Mesh3d per building (its trace's index is its place in `buildings`, + 1),
    in metres about the ground's centre; the camera sees the whole community from the south-west."""
    origin = (ground.centroid.x, ground.centroid.y)
    ring = [to_metres(origin, p) for p in list(ground.exterior.coords)[:-1]]
    floor = flat(ring)
    data = [go.Mesh3d(x=floor.x, y=floor.y, z=floor.z, i=floor.i, j=floor.j, k=floor.k, color="#2c2c2e",
                      hoverinfo="skip", name="ground")]
    tallest = FLOOR_HEIGHT_M
    for b in buildings:
        mesh = building_mesh(b, origin)
        tallest = max(tallest, b.floors * FLOOR_HEIGHT_M)
        data.append(go.Mesh3d(x=mesh.x, y=mesh.y, z=mesh.z, i=mesh.i, j=mesh.j, k=mesh.k, color=colour_of(mode, b),
                              flatshading=True, name=plot_text(ledger_page._plain(b.name)),
                              hovertext=f"{plot_text(ledger_page._plain(b.name))}<br>{_about(b)}", hoverinfo="text",
                              lighting={"ambient": 0.55, "diffuse": 0.8, "specular": 0.1}))
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    width = max(max(xs) - min(xs), max(ys) - min(ys), 1.0)
    axis = {"visible": False, "showbackground": False}
    fig = go.Figure(data=data)
    fig.update_layout(template="plotly_dark", paper_bgcolor="rgba(0,0,0,0)", margin={"l": 0, "r": 0, "t": 0, "b": 0},
                      showlegend=False, uirevision=mode, scene={
                          "xaxis": {**axis, "range": [min(xs), max(xs)]},
                          "yaxis": {**axis, "range": [min(ys), max(ys)]},
                          "zaxis": {**axis, "range": [0, tallest * 1.05]}, "aspectmode": "manual",
                          "aspectratio": {"x": (max(xs) - min(xs)) / width, "y": (max(ys) - min(ys)) / width,
                                          "z": max(HEIGHT_SCALE * tallest * 1.05 / width, 0.1)},
                          "camera": {"eye": {"x": -0.5, "y": -0.75, "z": 0.45},
                                     "center": {"x": 0, "y": 0, "z": -0.08}}})
    return fig


# --- callbacks -----------------------------------------------------------------------------------

def _asked(url_search: str | None):
    """(who asks, the drawable scope they may see) or (who, the refusal's words)."""
    identity = current_identity()
    decision = authorize(app_state().city, identity, PAGE, asked_scope(identity, query_params(url_search)))
    if not decision:
        return identity, decision.reason
    if not _drawable(decision.scope):
        return identity, str(Label("choose a community or a grid", "请选择社区或网格"))
    return identity, decision.scope


@callback(Output("ledger-map-buildings", "children"), Output("ledger-map-3d", "figure"),
          Output("ledger-map-3d-ids", "data"), Output("ledger-map-legend", "children"),
          Output("ledger-map-note", "children"),
          Input("ledger-map-colour", "value"), State("shell-url", "search"), roles=PAGE.roles,
          why="the scope's buildings on the map and in 3D, coloured as chosen (counts only; authorizes the scope)")
def draw(mode, url_search):
    identity, scope = _asked(url_search)
    if not isinstance(scope, Scope):
        return [], go.Figure(), [], ledger_page._refused(scope), None
    mode = mode if mode in COLOUR_BY else "use"
    buildings, more = places().buildings(scope)
    note = str(Label("only the first buildings are drawn: choose a grid", "仅显示部分楼栋：请选择网格")) if more \
        else None
    return (map_buildings(buildings, mode), view_3d(_ground(app_state(), scope), buildings, mode),
            [b.building_id for b in buildings], legend(mode), note)


@callback(Output("ledger-map-panel", "children"),
          Input({"type": "ledger-map-building", "building": ALL}, "n_clicks"), Input("ledger-map-3d", "clickData"),
          State("ledger-map-3d-ids", "data"), State("shell-url", "search"), prevent_initial_call=True,
          roles=PAGE.roles, why="a building's floors × houses (masked, marked; authorizes the scope and the building)")
def open_building(_clicks, clicked, ids, url_search):
    """The clicked building's panel, if it lies in the scope (a forged id: refused in words)."""
    building_id = _clicked_building(clicked, ids)
    if building_id is None:
        return no_update
    identity, scope = _asked(url_search)
    if not isinstance(scope, Scope):
        return ledger_page._refused(scope)
    building = ledger_page.ledger().building(scope, identity.user, building_id)
    if building is None:
        return ledger_page._refused(str(Label("no such building in this scope", "本范围内无此楼栋")))
    link = dcc.Link(str(Label("open in basic data", "在基础数据中查看")), className="button small",
                    href=f"{ledger_page.PAGE.path}?scope={building.grid_code}", id="ledger-map-open-ledger")
    return html.Div(id="ledger-map-building-panel", children=[*_without_house_ids(
        ledger_page.building_grid(building)), link])


def _clicked_building(clicked, ids) -> str | None:
    """Which building a click names: a footprint's id, or the 3D trace's (ground is trace 0)."""
    trigger = ctx.triggered_id
    if isinstance(trigger, dict):
        return str(trigger.get("building")) if ctx.triggered[0]["value"] else None
    points = clicked.get("points") if isinstance(clicked, dict) else None
    first = points[0] if isinstance(points, list) and points and isinstance(points[0], dict) else {}
    curve = first.get("curveNumber")
    if isinstance(curve, int) and not isinstance(curve, bool) and isinstance(ids, list) and 0 < curve <= len(ids):
        found = ids[curve - 1]
        return found if isinstance(found, str) else None
    return None


def _without_house_ids(component):
    """The basic-data page's panel without its house cells' ids: a click there belongs to that page's
    callbacks (its house detail), which this page does not hold."""
    if isinstance(component, list):
        return [_without_house_ids(c) for c in component]
    if getattr(component, "id", None) and isinstance(component.id, dict):
        component.id = None
    children = getattr(component, "children", None)
    if children is not None and not isinstance(children, str):
        component.children = _without_house_ids(children)
    return component

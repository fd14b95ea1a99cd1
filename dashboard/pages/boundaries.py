"""Org units' boundaries, for admins: a community's grids (or a street's communities) on the map,
downloaded as GeoJSON (the file the import takes: edit it in QGIS or geojson.io, then import it
again), and an import of them, refused with the names of the units that overlap, reach outside
their parent or leave a gap, or of the grids a community's new boundary would no longer hold
(registry.boundaries). The ingest workers and the screens rebuild their grid index and org tree on
the registry's notification; nothing restarts.

The import is authorized on the server for the parent the file's codes name."""
from __future__ import annotations

import base64

import dash_leaflet as dl
import orjson
from dash import Input, Output, State, ctx, dcc, html, no_update

from core.catalogue import Label
from dashboard import registry_commands as rc
from dashboard import registry_ui as ui
from dashboard.authz import Scope, authorize, current_identity
from dashboard.declarations import callback, page
from dashboard.state import app_state
from registry import boundaries
from registry.store import RegistryError

TITLE = Label("Boundaries", "边界")


_CHILDREN = {6: Label("its streets", "其街道"), 9: Label("its communities", "其社区"), 12: Label("its grids", "其网格")}
_PLURALS = {6: Label("streets", "个街道"), 9: Label("communities", "个社区"), 12: Label("grids", "个网格")}


def _parents(state, scope: Scope) -> list[dict]:
    """The org units of the scope whose units may be imported: a district's streets, a street's
    communities, a community's grids."""
    units = [u for u in [*state.city.districts, *state.city.streets, *state.city.communities] if scope.covers(u.code)]
    return [{"label": f"{state.city.org_name(u.code)} · {u.code} — {str(_CHILDREN[len(u.code)])}", "value": u.code}
            for u in sorted(units, key=lambda u: u.code)]


def layout(state, scope: Scope, kiosk: bool = False):
    communities = _parents(state, scope)
    first = next((o["value"] for o in communities if len(o["value"]) == 12), None)
    download, drawn = community_view(state, first) if first else ("", "")
    return html.Div(className="admin", id="boundaries", children=[
        ui.head(PAGE, Label(
                    "a community's grids, a street's communities, must tile it: no overlap, nothing outside, no gap",
                    "社区的网格、街道的社区须铺满其上级：无重叠、无越界、无空隙")),
        dcc.Store(id="boundaries-changed", data=0),
        html.Div(className="admin-columns registry-columns", children=[
            html.Div(className="registry-forms", children=[
                html.Section(className="wall-panel", children=[
                    html.H2(str(Label("A community's grids, a street's communities, a district's streets",
                                      "社区的网格、街道的社区、区的街道"))),
                    dcc.Dropdown(id="boundaries-community", options=communities, value=first, clearable=False,
                                 searchable=True),
                    html.Div(id="boundaries-download", children=download),
                ]),
                html.Section(className="wall-panel", children=[
                    html.H2(str(Label("Import boundaries", "导入边界"))),
                    dcc.Upload(id="boundaries-upload", className="registry-upload",
                               accept=".geojson,.json,application/geo+json,application/json",
                               children=html.Div(str(Label("Drop a GeoJSON file here, or click to choose one",
                                                           "拖入 GeoJSON 文件，或点击选择")))),
                    html.Div(str(Label("a FeatureCollection of every grid of one community (properties code, 15 "
                                       "digits, name, optionally kind, households, population), or of every "
                                       "community of one street (code, 12 digits, name): the file downloaded above",
                                       "一个社区全部网格（属性 code 15位、name，可选 kind、households、population）"
                                       "或一个街道全部社区（code 12位、name）的 FeatureCollection：即上方下载的文件")),
                             className="audit-dim"),
                    ui.result("boundaries"),
                ]),
            ]),
            html.Section(className="wall-panel", children=[
                html.H2(str(Label("On the map", "地图"))),
                html.Div(id="boundaries-map", children=drawn),
            ]),
        ]),
    ])


PAGE = page("/boundaries", TITLE, rc.ADMINS, layout, nav=False, order=140, section=ui.SECTION)


def community_view(state, parent_code: str):
    """(the download link and the units' facts, the map) of a community's grids or a street's
    communities, as the database has them."""
    document = boundaries.export_boundaries(state.settings.pg_dsn, parent_code)
    grids = document["features"]
    what = _PLURALS[len(parent_code)].en
    data = base64.b64encode(orjson.dumps(document)).decode()
    facts = f"{len(grids)} {str(_PLURALS[len(parent_code)])}"
    if what == "grids":
        facts += f" · {sum(f['properties']['households'] for f in grids):,} {str(Label('households', '户'))}"
    download = [html.Div(facts, className="audit-dim"),
                html.A(f"{parent_code}-{what}.geojson", href=f"data:application/geo+json;base64,{data}",
                       download=f"{parent_code}-{what}.geojson", id="boundaries-file", className="button small"),
                html.Ul(className="boundaries-grids", children=[
                    html.Li(f"{f['properties']['code']} · {f['properties']['name']}") for f in grids])]
    outline = {"type": "Feature", "geometry": document["parent"]["boundary"], "properties": {}}
    layers = [dl.GeoJSON(data={"type": "FeatureCollection", "features": [outline]},
                         style={"color": "#ffd60a", "weight": 3, "fill": False, "dashArray": "6 4"}),
              dl.GeoJSON(data={"type": "FeatureCollection", "features": grids}, id="boundaries-grids",
                         style={"color": "#64d2ff", "weight": 2, "fillOpacity": 0.12})]
    if state.tile_url:
        layers.insert(0, dl.TileLayer(url=state.tile_url))
    coords = [xy for f in [outline, *grids] for xy in _points(f["geometry"])]
    lons, lats = [x for x, _ in coords], [y for _, y in coords]
    bounds = [[min(lats), min(lons)], [max(lats), max(lons)]] if coords else None
    return download, dl.Map(layers, bounds=bounds, className="boundaries-map", id="boundaries-leaflet",
                            attributionControl=False, preferCanvas=True, trackViewport=False)


def _points(geometry: dict):
    """Every position of a Polygon or MultiPolygon."""
    rings = geometry["coordinates"] if geometry["type"] == "Polygon" else \
        [ring for polygon in geometry["coordinates"] for ring in polygon]
    return [tuple(p[:2]) for ring in rings for p in ring]


@callback(Output("boundaries-download", "children"), Output("boundaries-map", "children"),
          Input("boundaries-community", "value"), Input("boundaries-changed", "data"), prevent_initial_call=True,
          roles=PAGE.roles, why="an org unit's units as GeoJSON and on the map (authorizes the org unit)")
def show_community(parent_code, _changed):
    state = app_state()
    if not parent_code or not authorize(state.city, current_identity(), PAGE, parent_code):
        return ui.refused(str(Label("choose an org unit of your scope", "请选择您辖区内的单位"))), ""
    try:
        return community_view(state, parent_code)
    except RegistryError as exc:
        return ui.refused(str(exc)), ""


@callback(Output("boundaries-result", "children"), Output("boundaries-changed", "data"),
          Output("boundaries-community", "value"),
          Input("boundaries-upload", "contents"), State("boundaries-upload", "filename"),
          State("boundaries-changed", "data"), prevent_initial_call=True,
          roles=PAGE.roles, why="import a community's grids, a street's communities or a district's streets "
              "(authorized for that parent)",
          changes=(rc.IMPORT_BOUNDARIES,))
def import_file(contents, filename, changed):
    """Checked as the registry checks it (naming the offending units), after authorizing the
    parent the file's codes name (a community for grids, a street for communities)."""
    if not ctx.triggered[0]["value"]:
        return no_update, no_update, no_update
    try:
        data = ui.uploaded(contents)
    except RegistryError as exc:
        return ui.refused(f"{filename or 'the file'}: {exc}"), no_update, no_update
    result = ui.execute(rc.ImportBoundaries(data, filename or ""))
    if not result.ok:
        return ui.refused(result.reason), no_update, no_update
    summary, parent = result.handed
    return ui.done(summary), (changed or 0) + 1, parent

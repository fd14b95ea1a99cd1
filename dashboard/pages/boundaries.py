"""Grid boundaries, for admins: a community's grids on the map, downloaded as GeoJSON (the file the
import takes: edit it in QGIS or geojson.io, then import it again), and an import of a community's
grids, refused with the names of the grids that overlap, reach outside the community or leave a
gap (registry.boundaries). The ingest workers and the screens rebuild their grid index on the
registry's notification; nothing restarts.

The import is authorized on the server for the community the file's grid codes name."""
from __future__ import annotations

import base64
import binascii

import dash_leaflet as dl
import orjson
from dash import Input, Output, State, callback, ctx, dcc, html, no_update

from dashboard import registry_ui as ui
from dashboard.authz import Scope, authorize, current_identity
from dashboard.commands import Action
from dashboard.pages import Page
from dashboard.state import app_state
from registry import boundaries
from registry.store import RegistryError
from telemetry.catalogue import Label
from telemetry.orgcodes import parent_of

IMPORT = Action("registry.boundaries.import", ui.ADMINS)


def _communities(state, scope: Scope) -> list[dict]:
    return [{"label": f"{state.city.org_name(c.code)} · {c.code}", "value": c.code}
            for c in state.city.communities if scope.covers(c.code)]


def layout(state, scope: Scope, kiosk: bool = False):
    communities = _communities(state, scope)
    first = communities[0]["value"] if communities else None
    download, drawn = community_view(state, first) if first else ("", "")
    return html.Div(className="admin", id="boundaries", children=[
        ui.head("/boundaries", Label("Grid boundaries", "网格边界"),
                Label("a community's grids must tile it: no overlap, nothing outside, no gap",
                      "社区内网格须无重叠、无越界、无空隙")),
        dcc.Store(id="boundaries-changed", data=0),
        html.Div(className="admin-columns registry-columns", children=[
            html.Div(className="registry-forms", children=[
                html.Section(className="wall-panel", children=[
                    html.H2(str(Label("Community", "社区"))),
                    dcc.Dropdown(id="boundaries-community", options=communities, value=first, clearable=False,
                                 searchable=True),
                    html.Div(id="boundaries-download", children=download),
                ]),
                html.Section(className="wall-panel", children=[
                    html.H2(str(Label("Import a community's grids", "导入社区网格边界"))),
                    dcc.Upload(id="boundaries-upload", className="registry-upload",
                               accept=".geojson,.json,application/geo+json,application/json",
                               children=html.Div(str(Label("Drop a GeoJSON file here, or click to choose one",
                                                           "拖入 GeoJSON 文件，或点击选择")))),
                    html.Div(str(Label("a FeatureCollection of every grid of one community: properties code "
                                       "(15 digits), name, and optionally kind, households, population",
                                       "一个社区全部网格的 FeatureCollection：属性 code（15位）、name，"
                                       "可选 kind、households、population")), className="audit-dim"),
                    html.Div(id="boundaries-result", className="admin-result", role="status"),
                ]),
            ]),
            html.Section(className="wall-panel", children=[
                html.H2(str(Label("On the map", "地图"))),
                html.Div(id="boundaries-map", children=drawn),
            ]),
        ]),
    ])


PAGE = Page("/boundaries", Label("Boundaries", "网格边界"), ui.ADMINS, layout, nav=False)


def community_view(state, community_code: str):
    """(the download link and the grids' facts, the map) of a community, as the database has it."""
    document = boundaries.export_boundaries(state.settings.pg_dsn, community_code)
    grids = document["features"]
    data = base64.b64encode(orjson.dumps(document)).decode()
    households = sum(f["properties"]["households"] for f in grids)
    download = [html.Div(f"{len(grids)} {str(Label('grids', '个网格'))} · {households:,} "
                         f"{str(Label('households', '户'))}", className="audit-dim"),
                html.A(f"{community_code}-grids.geojson", href=f"data:application/geo+json;base64,{data}",
                       download=f"{community_code}-grids.geojson", id="boundaries-file", className="button small"),
                html.Ul(className="boundaries-grids", children=[
                    html.Li(f"{f['properties']['code']} · {f['properties']['name']}") for f in grids])]
    outline = {"type": "Feature", "geometry": document["community"]["boundary"], "properties": {}}
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
                            attributionControl=False, preferCanvas=True)


def _points(geometry: dict):
    """Every position of a Polygon or MultiPolygon."""
    rings = geometry["coordinates"] if geometry["type"] == "Polygon" else \
        [ring for polygon in geometry["coordinates"] for ring in polygon]
    return [tuple(p[:2]) for ring in rings for p in ring]


@callback(Output("boundaries-download", "children"), Output("boundaries-map", "children"),
          Input("boundaries-community", "value"), Input("boundaries-changed", "data"), prevent_initial_call=True)
def show_community(community_code, _changed):
    state = app_state()
    if not community_code or not authorize(state.city, current_identity(), PAGE, community_code):
        return ui.refused(str(Label("choose a community of your scope", "请选择您辖区内的社区"))), ""
    try:
        return community_view(state, community_code)
    except RegistryError as exc:
        return ui.refused(str(exc)), ""


@callback(Output("boundaries-result", "children"), Output("boundaries-changed", "data"),
          Output("boundaries-community", "value"),
          Input("boundaries-upload", "contents"), State("boundaries-upload", "filename"),
          State("boundaries-changed", "data"), prevent_initial_call=True)
def import_file(contents, filename, changed):
    """Checked as the registry checks it (naming the offending grids), after authorizing the
    community its grid codes name."""
    if not ctx.triggered[0]["value"]:
        return no_update, no_update, no_update
    state, identity = app_state(), current_identity()
    try:
        try:
            data = base64.b64decode(contents.split(",", 1)[1], validate=True)
        except (IndexError, binascii.Error):
            raise RegistryError("the upload did not arrive whole; choose the file again") from None
        try:
            grids = boundaries._grids(orjson.loads(data))
        except orjson.JSONDecodeError as exc:
            raise RegistryError(f"{filename or 'the file'} is not JSON: {exc}") from None
        community = parent_of(grids[0]["code"])
        why = ui.allowed(identity, IMPORT, community if community in state.city.org_by_code else None,
                         f"community:{community}")
        if why:
            return ui.refused(why), no_update, no_update
        summary = boundaries.import_boundaries(state.settings.pg_dsn, ui.actor(identity), data)
    except RegistryError as exc:
        return ui.refused(str(exc)), no_update, no_update
    return ui.done(summary), (changed or 0) + 1, community

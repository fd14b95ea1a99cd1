"""Gateways and their sensors, for admins: add a building's gateway or elevator controller (its
password shown once, with the broker and topics it publishes to), give it a new password, revoke,
move it (with its sensors) or retire it; add a sensor behind it, under the name it reports (a
URN such as urn:dev:ow:10e2073a01080063 for SenML), move a sensor to another building (its
readings land in that building's grid from then on), retire it. Nothing restarts.

Each change is authorized on the server for the grid of what it touches (a move: both buildings'
grids); a building is chosen by typing its name or id, among the admin's scope only."""
from __future__ import annotations

from dash import ALL, ClientsideFunction, Input, Output, State, ctx, dcc, html, no_update

from core.catalogue import DeviceKind, Label
from core.city import GatewayKind
from dashboard import registry_commands as rc
from dashboard import registry_ui as ui
from dashboard.authz import Scope, authorize, current_identity
from dashboard.declarations import callback, clientside_callback, page
from dashboard.state import app_state

GATEWAY_ACTIONS = (rc.ADD_GATEWAY, rc.MOVE_GATEWAY, rc.RETIRE_GATEWAY, rc.ROTATE, rc.REVOKE, rc.ADD_SENSOR,
                   rc.MOVE_SENSOR, rc.RETIRE_SENSOR)
TITLE = Label("Gateways and sensors", "网关与传感器")
GATEWAY_KINDS = {GatewayKind.BUILDING_GATEWAY: Label("Building gateway (meters, gas detectors)",
                                                     "楼宇网关（表计、燃气探测器）"),
                 GatewayKind.ELEVATOR_CONTROLLER: Label("Elevator controller", "电梯控制器")}
SENSOR_KINDS = {DeviceKind.ELEVATOR: Label("Elevator", "电梯"),
                DeviceKind.GAS_DETECTOR: Label("Gas detector", "燃气探测器"),
                DeviceKind.WATER_METER: Label("Water meter", "水表"),
                DeviceKind.ELECTRICITY_METER: Label("Electricity meter", "电表"),
                DeviceKind.GAS_METER: Label("Gas meter", "燃气表")}
PROTOCOLS = {"senml": Label("SenML (RFC 8428)", "SenML（RFC 8428）"), "json": Label("our JSON", "本系统 JSON")}
_BUILDING_PICKERS = ("gateways-add-building", "gateways-sensor-building", "gateways-move-building")


def _options(labels: dict) -> list[dict]:
    return [{"label": str(label), "value": getattr(key, "value", key)} for key, label in labels.items()]


def _building_picker(id_: str, placeholder: Label):
    return dcc.Dropdown(id=id_, options=[], searchable=True, placeholder=str(placeholder),
                        className="registry-building")


def layout(state, scope: Scope, kiosk: bool = False):
    table, choices = gateways_table(state, scope, "")
    return html.Div(className="admin", id="gateways", children=[
        ui.head(PAGE, Label(
                    "a gateway connects without a restart; its password is shown once",
                    "网关即时接入，无需重启；密码只显示一次")),
        dcc.Store(id="gateways-changed", data=0),
        html.Div(className="admin-columns registry-columns", children=[
            html.Div(className="registry-forms", children=[
                html.Section(className="wall-panel", children=[
                    html.H2(str(Label("Add a gateway", "接入网关"))),
                    html.Div(className="admin-form registry-form", children=[
                        dcc.Input(id="gateways-id", maxLength=64,
                                  placeholder=str(Label("gateway id, e.g. GW-B-0001-9", "网关编号，如 GW-B-0001-9"))),
                        dcc.Dropdown(id="gateways-kind", options=_options(GATEWAY_KINDS), clearable=False,
                                     value=GatewayKind.BUILDING_GATEWAY.value),
                        _building_picker("gateways-add-building", Label("building: type its name or id",
                                                                        "楼宇：输入名称或编号")),
                        dcc.Dropdown(id="gateways-protocol", options=_options(PROTOCOLS), clearable=False,
                                     value="senml"),
                        html.Button(str(Label("Add gateway", "接入")), id="gateways-add", className="button"),
                    ]),
                ]),
                ui.result("gateways"),
                html.Section(className="wall-panel", children=[
                    html.H2(str(Label("The gateway chosen", "所选网关"))),
                    dcc.Dropdown(id="gateways-pick", options=choices, searchable=True,
                                 placeholder=str(Label("gateway (or Sensors… in the list)",
                                                       "网关（或在列表中点“传感器”）"))),
                    html.Div(id="gateways-sensors"),
                    html.H3(str(Label("Move", "迁移"))),
                    html.Div(className="admin-form registry-form", children=[
                        _building_picker("gateways-move-building", Label("to building: type its name or id",
                                                                         "迁往楼宇：输入名称或编号")),
                        html.Button(str(Label("Move the gateway and its sensors there", "网关及传感器迁往该楼宇")),
                                    id="gateways-move", className="button small"),
                    ]),
                    html.H3(str(Label("Add a sensor behind it", "添加传感器"))),
                    html.Div(className="admin-form registry-form", children=[
                        dcc.Input(id="gateways-sensor-id", maxLength=64,
                                  placeholder=str(Label("name as it reports, e.g. urn:dev:ow:10e2073a01080063",
                                                        "上报名称，如 urn:dev:ow:10e2073a01080063"))),
                        dcc.Dropdown(id="gateways-sensor-kind", options=_options(SENSOR_KINDS),
                                     placeholder=str(Label("kind", "类型"))),
                        _building_picker("gateways-sensor-building", Label("building (the gateway's if empty)",
                                                                           "楼宇（默认网关所在楼宇）")),
                        html.Button(str(Label("Add sensor", "添加")), id="gateways-sensor-add", className="button"),
                    ]),
                ]),
            ]),
            html.Section(className="wall-panel", children=[
                html.H2(str(Label("Gateways", "网关"))),
                dcc.Input(id="gateways-search", type="search", debounce=True, className="registry-search",
                          placeholder=str(Label("search gateway, building or grid", "搜索网关、楼宇或网格"))),
                html.Div(id="gateways-table", children=table),
            ]),
        ]),
    ])


PAGE = page("/gateways", TITLE, rc.ADMINS, layout, nav=False, order=130, section=ui.SECTION)


def _confirm(type_: str, key: str, value: str, do: str, text: Label, message: str):
    return dcc.ConfirmDialogProvider(html.Button(str(text), className="button small"),
                                     id={"type": type_, key: value, "do": do}, message=message)


def gateways_table(state, scope: Scope, search: str):
    """The list, and the gateways it shows as the chooser's options."""
    rows, total = state.queries.registry_gateways(scope, (search or "").strip(), ui.SHOWN_ROWS)
    body = []
    for gateway_id, kind, protocol, _building_id, building, grid, sensors in rows:
        kind_label = GATEWAY_KINDS.get(kind, kind)        # str enums: their values look them up
        body.append(html.Tr(id=f"gateways-row-{gateway_id}", children=[
            html.Td([html.Div(gateway_id, className="admin-name"),
                     html.Div(f"{str(kind_label).split(' (')[0]} · {protocol}", className="audit-dim")]),
            html.Td([html.Div(building), html.Div(state.queries.org_name(grid), className="audit-dim")]),
            html.Td(f"{sensors}"),
            html.Td(className="admin-actions", children=[
                html.Button(str(Label("Sensors…", "传感器…")), className="button small",
                            id={"type": "gateways-pick-row", "gateway": gateway_id}),
                _confirm("gateways-do", "gateway", gateway_id, "rotate", Label("New password", "重置密码"),
                         f"A new password for {gateway_id}: the old one stops working at once. 重置密码？"),
                _confirm("gateways-do", "gateway", gateway_id, "revoke", Label("Revoke", "吊销"),
                         f"Revoke {gateway_id}? It is disconnected at once. 吊销？"),
                _confirm("gateways-do", "gateway", gateway_id, "retire", Label("Retire", "停用"),
                         f"Retire {gateway_id} and its {sensors} sensors? What they still send is refused. 停用？"),
            ]),
        ]))
    head = [Label("Gateway", "网关"), Label("Building", "楼宇"), Label("Sensors", "传感器"), ""]
    table = [ui.count_line(len(rows), total, Label("gateways", "个网关")),
             html.Table(className="data-table", id="gateways-list", children=[
                 html.Thead(html.Tr([html.Th(str(h)) for h in head])), html.Tbody(body)])]
    return table, [{"label": f"{gateway_id} · {building}", "value": gateway_id}
                   for gateway_id, _k, _p, _b, building, _g, _s in rows]


@callback(Output("gateways-table", "children"), Output("gateways-pick", "options"),
          Input("gateways-search", "value"), Input("gateways-changed", "data"),
          State("shell-url", "search"), State("gateways-pick", "value"), State("gateways-pick", "options"),
          prevent_initial_call=True,
          roles=PAGE.roles, why="the gateways of the scope, searched (authorizes the scope)")
def refresh_table(search, _changed, url_search, picked, options):
    """The list again for the org selector's scope (authorized again); the gateway chosen stays a choice."""
    _, scope, why = ui.asked(PAGE, url_search)
    if why:
        return ui.refused(why), []
    table, choices = gateways_table(app_state(), scope, search or "")
    kept = [o for o in options or [] if o["value"] == picked and o["value"] not in {c["value"] for c in choices}]
    return table, kept + choices


clientside_callback(ClientsideFunction(namespace="gcc", function_name="registryPick"),
                    Output("gateways-pick", "value"), Input({"type": "gateways-pick-row", "gateway": ALL}, "n_clicks"),
                    prevent_initial_call=True, roles=PAGE.roles, why="a row's Sensors… picks the gateway (no data)")


@callback(Output("gateways-add-building", "options"), Output("gateways-sensor-building", "options"),
          Output("gateways-move-building", "options"),
          *[Input(p, "search_value") for p in _BUILDING_PICKERS], *[State(p, "value") for p in _BUILDING_PICKERS],
          prevent_initial_call=True,
          roles=PAGE.roles, why="the buildings matching what is typed (the admin's scope)")
def buildings(*values):
    """The buildings whose name or id holds what is typed, in the admin's own scope (the one typed
    into gets new options; the others keep theirs)."""
    searches, chosen = values[:3], values[3:]
    trigger = ctx.triggered_id
    if trigger not in _BUILDING_PICKERS:
        return no_update, no_update, no_update
    index = _BUILDING_PICKERS.index(trigger)
    search = (searches[index] or "").strip()
    if not search:
        return no_update, no_update, no_update
    state = app_state()
    own = ui.own_scope(current_identity())
    found = state.queries.buildings_matching(own, search)
    grid = state.queries.registry_grid("building", chosen[index]) if chosen[index] else None
    if grid is not None and own.covers(grid) and chosen[index] not in {b for b, _n, _g in found}:
        found = [(chosen[index], state.queries.building_name(chosen[index]) or chosen[index], grid), *found]
    options = [{"label": f"{name} · {building_id} · {state.queries.org_name(grid)}", "value": building_id}
               for building_id, name, grid in found]
    return tuple(options if i == index else no_update for i in range(3))


@callback(Output("gateways-sensors", "children"), Input("gateways-pick", "value"), Input("gateways-changed", "data"),
          prevent_initial_call=True,
          roles=PAGE.roles, why="the gateway chosen and its sensors (authorizes its grid)")
def gateway_sensors(gateway_id, _changed):
    """The gateway chosen and its sensors (only within the admin's scope)."""
    state, identity = app_state(), current_identity()
    grid = state.queries.registry_grid("gateway", gateway_id or "")
    if grid is None or not authorize(state.city, identity, PAGE, grid):
        return html.Div(str(Label("choose a gateway", "请选择网关")), className="audit-dim")
    own = ui.own_scope(identity)       # a sensor since moved beyond the admin's scope is not theirs
    sensors = [s for s in state.queries.registry_sensors(gateway_id) if own.covers(s[4])]
    rows = [html.Tr(id=f"gateways-sensor-{sensor_id}", children=[
        html.Td(html.Code(sensor_id)),
        html.Td(str(SENSOR_KINDS.get(kind, kind))),
        html.Td([html.Div(building), html.Div(state.queries.org_name(sensor_grid), className="audit-dim")]),
        html.Td(className="admin-actions", children=[
            html.Button(str(Label("Move to that building", "迁往该楼宇")), className="button small",
                        id={"type": "gateways-sensor-move", "sensor": sensor_id}),
            _confirm("gateways-sensor-retire", "sensor", sensor_id, "retire", Label("Retire", "停用"),
                     f"Retire sensor {sensor_id}? What it still sends is refused. 停用？"),
        ]),
    ]) for sensor_id, kind, _building_id, building, sensor_grid in sensors]
    head = [Label("Sensor", "传感器"), Label("Kind", "类型"), Label("Building", "楼宇"), ""]
    return [html.Div(f"{gateway_id}: {len(sensors)} {str(Label('sensors', '个传感器'))} — "
                     + str(Label("“Move to that building” takes the building chosen under Move",
                                 "“迁往该楼宇”使用下方“迁移”中所选楼宇")), className="audit-dim"),
            html.Table(className="data-table", id="gateways-sensor-list", children=[
                html.Thead(html.Tr([html.Th(str(h)) for h in head])), html.Tbody(rows)])]


@callback(Output("gateways-result", "children"), Output("gateways-changed", "data"),
          Input("gateways-add", "n_clicks"), Input("gateways-sensor-add", "n_clicks"),
          Input("gateways-move", "n_clicks"),
          Input({"type": "gateways-do", "gateway": ALL, "do": ALL}, "submit_n_clicks"),
          Input({"type": "gateways-sensor-move", "sensor": ALL}, "n_clicks"),
          Input({"type": "gateways-sensor-retire", "sensor": ALL, "do": ALL}, "submit_n_clicks"),
          State("gateways-id", "value"), State("gateways-kind", "value"), State("gateways-add-building", "value"),
          State("gateways-protocol", "value"), State("gateways-sensor-id", "value"),
          State("gateways-sensor-kind", "value"), State("gateways-sensor-building", "value"),
          State("gateways-pick", "value"), State("gateways-move-building", "value"), State("gateways-changed", "data"),
          prevent_initial_call=True,
          roles=PAGE.roles, why="add, move, new password, revoke, retire a gateway; add, move, retire a sensor (each "
              "authorized for the building's grid, a move for both)",
          changes=GATEWAY_ACTIONS)
def change_gateway(_add, _sensor_add, _move, _do, _sensor_move, _sensor_retire, gateway_id, kind, building_id,
                   protocol, sensor_id, sensor_kind, sensor_building, picked, to_building, changed):
    """Each change authorized for the grid of what it touches, then done by the registry."""
    trigger = ctx.triggered_id
    if trigger is None or not ctx.triggered[0]["value"]:
        return no_update, no_update
    bump = (changed or 0) + 1
    if trigger == "gateways-add":
        gateway_id = (gateway_id or "").strip()
        if not (gateway_id and building_id):
            return ui.refused(str(Label("type the gateway's id and choose its building",
                                        "请填写网关编号并选择楼宇"))), no_update
        return _said(rc.AddGateway(gateway_id, kind, building_id, protocol or "senml"), None, bump)
    if trigger == "gateways-sensor-add":
        sensor_id = (sensor_id or "").strip()
        if not (sensor_id and sensor_kind and picked):
            return ui.refused(str(Label("choose the gateway, type the sensor's name and choose its kind",
                                        "请选择网关，填写传感器名称并选择类型"))), no_update
        return _said(rc.AddSensor(sensor_id, sensor_kind, picked, sensor_building or None), f"{sensor_id} → {picked}",
                     bump)
    if trigger == "gateways-move":
        return _said(rc.MoveGateway(picked or "", to_building or ""), _to(picked, to_building), bump)
    if trigger["type"] == "gateways-do":
        target, do = trigger["gateway"], trigger["do"]
        change = {"rotate": rc.RotateCredential, "revoke": rc.RevokeCredential, "retire": rc.RetireGateway}.get(do)
        if change is None:
            return ui.refused(f"no such change: {do!r}"), no_update
        return _said(change(target), None if do == "rotate" else f"{target} {do}d", bump)
    sensor = trigger["sensor"]
    if trigger["type"] == "gateways-sensor-move":
        return _said(rc.MoveSensor(sensor, to_building or ""), _to(sensor, to_building), bump)
    return _said(rc.RetireSensor(sensor), f"{sensor} retired", bump)


def _to(what: str | None, building_id: str | None) -> str:
    return f"{what} → {app_state().queries.building_name(building_id) if building_id else ''}"


def _said(command, done: str | None, bump):
    """The change through the command bus (authorized for the grid of what it touches, a move's
    building too): what it did, a new password (`done` None) shown once, or why not."""
    result = ui.execute(command)
    if not result.ok:
        return ui.refused(result.reason), no_update
    if done is None:
        return ui.secret("gateways", result.handed, ui.mqtt_settings(result.handed)), bump
    return ui.done(done), bump

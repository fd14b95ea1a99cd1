"""Members' devices, for admins: a member's phone joins here (OwnTracks, Traccar Client, or our own
handheld app 网格通), and any device gets a new password, is revoked or retired, without restarting
anything (registry.store; the CLI `python -m registry.devices` does the same and more: members,
gateways, sensors, imports).

The new password is shown once, with what the phone needs: for OwnTracks its configuration file
and a QR code to scan; for Traccar Client the server URL and identifier to type in. A handheld has
no password: it gets a one-time link (and its QR code), valid 24 hours, which the member opens on
the phone to enrol it and choose a PIN (handheld.sessions); revoking or retiring it stops it at its
next request. Every change
is authorized for the member's grid on the server (an admin of a street reaches only the street's
members) and audited by the registry.
"""
from __future__ import annotations

import base64
import io

import segno
from dash import ALL, Input, Output, State, ctx, dcc, html, no_update

from core import freetext
from core.catalogue import Label
from core.city import CITY_TZ
from core.roles import ROLE_LABELS
from dashboard import registry_commands as rc
from dashboard import registry_ui as ui
from dashboard.authz import Identity, Scope, current_identity
from dashboard.declarations import callback, page
from dashboard.state import app_state
from registry import onboarding
from registry.handhelds import Enrolment
from registry.store import Credential

DEVICE_ACTIONS = (rc.ADD_DEVICE, rc.ROTATE, rc.REVOKE, rc.RETIRE_DEVICE)
TITLE = Label("Members' phones", "网格员手机")
_PHONES = {"owntracks-mqtt": ("owntracks", "mqtt", Label("OwnTracks (MQTT)", "OwnTracks（MQTT）")),
           "owntracks-http": ("owntracks", "http", Label("OwnTracks (HTTP)", "OwnTracks（HTTP）")),
           "osmand": ("osmand", None, Label("Traccar Client", "Traccar Client")),
           "handheld": ("handheld", None, "网格通 handheld")}   # the members' own app: its name as they know it
HANDHELD_LABEL = _PHONES["handheld"][2]
_KIND_LABELS = {"terminal": str(Label("terminal", "终端")), "owntracks": "OwnTracks", "osmand": "Traccar Client",
                "handheld": HANDHELD_LABEL}


def layout(state, scope: Scope, kiosk: bool = False):
    identity = current_identity()
    members = [{"label": f"{m.name} · {ROLE_LABELS[m.role]} · {state.city.org_name(m.grid_code)} · {m.member_id}",
                "value": m.member_id} for m in state.queries.members(ui.own_scope(identity))]
    return html.Div(className="admin", id="devices", children=[
        ui.head(PAGE, Label(
                    "a phone joins without a restart; its password is shown once",
                    "手机即时接入，无需重启；密码只显示一次")),
        html.Div(className="admin-columns devices-columns", children=[
            html.Section(className="wall-panel", children=[
                html.H2(str(Label("Add a phone", "接入手机"))),
                html.Div(className="admin-form devices-form", children=[
                    dcc.Dropdown(id="devices-member", options=members, searchable=True,
                                 placeholder=str(Label("member", "网格员"))),
                    dcc.Dropdown(id="devices-app", clearable=False, value="owntracks-mqtt",
                                 options=[{"label": str(phone[2]), "value": key} for key, phone in _PHONES.items()]),
                    dcc.Input(id="devices-label", maxLength=freetext.NAME.max_length,
                              placeholder=str(Label("label, e.g. work phone", "备注，如工作手机"))),
                    html.Button(str(Label("Add phone", "接入")), id="devices-add", className="button"),
                ]),
                ui.result("devices"),
            ]),
            html.Section(className="wall-panel", children=[
                html.H2(str(Label("Phones", "手机"))),
                html.Div(str(_own_terminal(state.page_at("/members").label)),
                         className="audit-dim"),
                html.Div(id="devices-table", children=devices_table(state, identity)),
            ]),
        ]),
    ])


PAGE = page("/devices", TITLE, rc.ADMINS, layout, nav=False, order=120, section=ui.SECTION)


def _own_terminal(members: Label) -> Label:
    """Where a member's own terminal is managed, by that page's own name."""
    return Label(f"a member's own terminal is on {members.en}", f"网格员的专用终端见“{members.zh}”")


def devices_table(state, identity: Identity | None):
    rows = []
    for device_id, kind, label, added, _member, name, grid in state.queries.member_devices(ui.own_scope(identity)):
        actions = [dcc.ConfirmDialogProvider(html.Button(str(text), className="button small"),
                                             id={"type": "devices-do", "device": device_id, "do": do}, message=message)
                   for do, text, message in (
                       ("rotate", Label("New password", "重置密码"),
                        f"A new password for {device_id}: the old one stops working at once. 重置密码？"),
                       ("revoke", Label("Revoke", "吊销"), f"Revoke {device_id}? It is disconnected at once. 吊销？"),
                       ("retire", Label("Retire", "停用"),
                        f"Retire {device_id}? What it still sends is refused. 停用设备？"))
                   if not (do == "retire" and kind == "terminal") and not (do == "rotate" and kind == "handheld")]
        rows.append(html.Tr(id=f"devices-row-{device_id}", children=[
            html.Td([html.Div(device_id, className="admin-name"), html.Div(label, className="audit-dim")]),
            html.Td(_KIND_LABELS.get(kind, kind)),
            html.Td([html.Div(name), html.Div(state.city.org_name(grid), className="audit-dim")]),
            html.Td(added.astimezone(CITY_TZ).strftime("%Y-%m-%d")),
            html.Td(className="admin-actions", children=actions),
        ]))
    head = [Label("Device", "设备"), Label("Kind", "类型"), Label("Member", "网格员"), Label("Added", "接入"), ""]
    return html.Table(className="data-table", id="devices-list", children=[
        html.Thead(html.Tr([html.Th(str(h)) for h in head])), html.Tbody(rows)])


def _phone_said(credential: Credential, mode: str | None):
    """The new password, and what the phone needs, shown this once."""
    settings = app_state().settings
    parts = []
    if credential.kind.value == "owntracks":
        config = onboarding.owntracks_config(credential, settings, mode=mode or "mqtt")
        qr = base64.b64encode(onboarding.qr_png(config, scale=4)).decode()
        otrc = base64.b64encode(onboarding.otrc(config)).decode()
        parts += [html.Img(src=f"data:image/png;base64,{qr}", id="devices-qr", className="devices-qr",
                           alt="OwnTracks configuration QR code"),
                  html.Div(str(Label("scan it with OwnTracks (or open the file on the phone)",
                                     "用 OwnTracks 扫码（或在手机上打开配置文件）"))),
                  html.A(f"{credential.device_id}.otrc", href=f"data:application/json;base64,{otrc}",
                         download=f"{credential.device_id}.otrc", id="devices-otrc", className="button small")]
    elif credential.kind.value == "osmand":
        client = onboarding.traccar_client(credential, settings)
        parts += [html.Div(str(Label("in Traccar Client's settings:", "在 Traccar Client 设置中填写："))),
                  html.Div([str(Label("server URL", "服务器地址")), html.Code(client["server_url"], id="devices-url")]),
                  html.Div([str(Label("device identifier", "设备标识")), html.Code(client["device_identifier"])])]
    elif credential.kind.value in ("terminal", "gateway"):
        parts.append(ui.mqtt_settings(credential))
    return ui.secret("devices", credential, *parts)


def _enrolment_said(enrolment: Enrolment):
    """The one-time link and its QR code, shown this once: the member opens it on the phone."""
    link = enrolment.link(onboarding.ingest_url(app_state().settings))
    out = io.BytesIO()
    segno.make(link, error="m").save(out, kind="png", scale=4, border=4)
    until = enrolment.expires_at.astimezone(CITY_TZ).strftime("%Y-%m-%d %H:%M")
    return html.Div(className="admin-done", children=html.Div(className="admin-secret", children=[
        html.Div(f"{HANDHELD_LABEL} · {enrolment.device_id} — "
                 + str(Label("open this link on the member's phone, once; shown once",
                             "请在网格员手机上打开此链接（仅可使用一次，仅显示一次）"))),
        html.Img(src=f"data:image/png;base64,{base64.b64encode(out.getvalue()).decode()}", id="devices-enrol-qr",
                 className="devices-qr", alt="handheld enrolment QR code"),
        html.Code(link, id="devices-enrol-link", className="registry-secret"),
        html.Div([f"{Label('valid until', '有效期至')} ", html.Span(until, id="devices-enrol-expires"),
                  f" ({Label('24 hours', '24小时')})"]),
        html.Div(str(Label("the member chooses a 6-digit PIN on the phone", "网格员在手机上设置6位PIN码")),
                 className="audit-dim"),
    ]))


@callback(Output("devices-result", "children"), Output("devices-table", "children"),
          Input("devices-add", "n_clicks"), Input({"type": "devices-do", "device": ALL, "do": ALL}, "submit_n_clicks"),
          State("devices-member", "value"), State("devices-app", "value"), State("devices-label", "value"),
          prevent_initial_call=True,
          roles=PAGE.roles, why="add a member's phone; a device's new password, revoke, retire (authorized for the "
              "member's grid)",
          changes=DEVICE_ACTIONS)
def change_device(_added, _confirmed, member_id, app, label):
    """Add a phone to a member; give a device a new password, revoke or retire it."""
    trigger = ctx.triggered_id
    if trigger is None or not ctx.triggered[0]["value"]:
        return no_update, no_update
    state, identity = app_state(), current_identity()
    mode, do = None, "add"
    if trigger == "devices-add":
        kind, mode, _ = _PHONES.get(app or "", _PHONES["owntracks-mqtt"])
        if kind == "handheld":
            device_id, command = "", rc.EnrolHandheld(member_id or "", label or "")
        else:
            device_id = state.queries.new_device_id(member_id or "", kind)
            command = rc.AddDevice(member_id or "", kind, device_id, label or "")
    else:
        device_id, do = trigger["device"], trigger["do"]
        change = {"rotate": rc.RotateCredential, "revoke": rc.RevokeCredential, "retire": rc.RetireDevice}.get(do)
        if change is None:
            return ui.refused(f"no such change: {do!r}"), no_update
        command = change(device_id)
    result = ui.execute(command)
    if not result.ok:
        return ui.refused(result.reason), no_update
    if isinstance(result.handed, Enrolment):
        return _enrolment_said(result.handed), devices_table(state, identity)
    said = _phone_said(result.handed, mode) if do in ("add", "rotate") else ui.done(f"{device_id} {do}d")
    return said, devices_table(state, identity)

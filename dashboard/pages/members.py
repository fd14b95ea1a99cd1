"""Members and their dedicated terminals, for admins: add a member (the terminal's password shown
once, with the broker it reaches), import a community's members from CSV (every bad line named, or
every terminal's password once, as a file), change a member's name and role, move them to another
grid, give them a new terminal, retire them. Nothing restarts: the broker account appears or
changes at once, and the ingest workers learn of it from the registry's notification.

Each change is authorized on the server for the member's grid (a move: for both grids); the list
and the editor show only the admin's scope, and a callback asking for a member outside it is
refused and audited."""
from __future__ import annotations

import base64
import csv
import io

from dash import ALL, ClientsideFunction, Input, Output, State, ctx, dcc, html, no_update
from flask import request

from core import freetext
from core.catalogue import Label
from core.roles import ROLE_LABELS, Role
from dashboard import registry_commands as rc
from dashboard import registry_ui as ui
from dashboard.authz import Scope, authorize, current_identity
from dashboard.declarations import callback, clientside_callback, page
from dashboard.state import app_state
from registry import onboarding
from registry.store import RegistryError

MEMBER_ACTIONS = (rc.ADD_MEMBER, rc.CHANGE_MEMBER, rc.MOVE_MEMBER, rc.REPLACE_TERMINAL, rc.RETIRE_MEMBER, rc.ROTATE,
                  rc.REVOKE)
TITLE = Label("Members and terminals", "网格员与终端")
CSV_EXAMPLE = "member_id,name,role,grid_code,terminal_id\nM-0601,王芳,grid_administrator,350102002003001,T-0601"


def _roles():
    return [{"label": f"{ROLE_LABELS[r]} · {r.value}", "value": r.value} for r in Role]


def _grids(state, scope: Scope):
    return [{"label": f"{state.city.org_name(g.code)} · {g.code}", "value": g.code}
            for g in state.city.grids if scope.covers(g.code)]


def _members(state, scope: Scope):
    """The editor's choice: every active member of the scope, as the database has them."""
    rows, _ = state.queries.registry_members(scope, "", 100_000)
    return [{"label": f"{name} · {member_id} · {state.queries.org_name(grid)}", "value": member_id}
            for member_id, name, _role, grid, _terminal, _phones in rows]


def layout(state, scope: Scope, kiosk: bool = False):
    own = ui.own_scope(current_identity())
    grids = _grids(state, own)
    return html.Div(className="admin", id="members", children=[
        ui.head(PAGE, Label(
                    "added, moved and retired while everything runs; a terminal's password is shown once",
                    "即时新增、调整、离岗，无需重启；终端密码只显示一次")),
        dcc.Store(id="members-changed", data=0),
        html.Div(className="admin-columns registry-columns", children=[
            html.Div(className="registry-forms", children=[
                html.Section(className="wall-panel", children=[
                    html.H2(str(Label("Add a member", "新增网格员"))),
                    html.Div(className="admin-form registry-form", children=[
                        dcc.Input(id="members-id", maxLength=64, placeholder=str(Label("member id, e.g. M-0601",
                                                                                       "网格员编号，如 M-0601"))),
                        dcc.Input(id="members-name", maxLength=freetext.NAME.max_length,
                                  placeholder=str(Label("name", "姓名"))),
                        dcc.Dropdown(id="members-role", options=_roles(), placeholder=str(Label("role", "角色"))),
                        dcc.Dropdown(id="members-grid", options=grids, searchable=True,
                                     placeholder=str(Label("grid", "网格"))),
                        dcc.Input(id="members-terminal", maxLength=64,
                                  placeholder=str(Label("terminal id (as printed on it)", "终端编号（见终端标签）"))),
                        html.Button(str(Label("Add member", "新增")), id="members-add", className="button"),
                    ]),
                    html.H2(str(Label("Import a community's members", "批量导入网格员"))),
                    dcc.Upload(id="members-upload", className="registry-upload", accept=".csv,text/csv",
                               children=html.Div([str(Label("Drop a CSV file here, or click to choose one",
                                                            "拖入 CSV 文件，或点击选择")),
                                                  html.Pre(CSV_EXAMPLE, className="registry-example")])),
                    html.Div(str(Label("one bad line refuses the whole file, naming every bad line; UTF-8 or GBK",
                                       "任一行有误则整份不导入，并逐行说明；支持 UTF-8 或 GBK")),
                             className="audit-dim"),
                ]),
                html.Section(className="wall-panel", children=[
                    html.H2(str(Label("Change a member", "修改网格员"))),
                    html.Div(className="admin-form registry-form", children=[
                        dcc.Dropdown(id="members-edit", options=_members(state, own), searchable=True,
                                     placeholder=str(Label("member (or Change… in the list)",
                                                           "网格员（或在列表中点“修改”）"))),
                        dcc.Input(id="members-edit-name", maxLength=freetext.NAME.max_length,
                                  placeholder=str(Label("name", "姓名"))),
                        dcc.Dropdown(id="members-edit-role", options=_roles(), clearable=False,
                                     placeholder=str(Label("role", "角色"))),
                        dcc.Dropdown(id="members-edit-grid", options=grids, searchable=True, clearable=False,
                                     placeholder=str(Label("grid (a move)", "网格（调整）"))),
                        html.Button(str(Label("Save", "保存")), id="members-save", className="button"),
                    ]),
                    html.Div(id="members-edit-terminal", className="audit-dim"),
                    html.Div(className="admin-form registry-form", children=[
                        dcc.Input(id="members-new-terminal", maxLength=64,
                                  placeholder=str(Label("new terminal id", "新终端编号"))),
                        html.Button(str(Label("New terminal", "更换终端")), id="members-replace",
                                    className="button small"),
                    ]),
                    html.Div(className="admin-form registry-form", children=[
                        dcc.ConfirmDialogProvider(
                            html.Button(str(Label("Terminal's new password", "重置终端密码")),
                                        className="button small"),
                            id="members-rotate",
                            message="A new password for this member's terminal: the old one stops working at once. "
                                    "重置终端密码？"),
                        dcc.ConfirmDialogProvider(
                            html.Button(str(Label("Revoke terminal", "吊销终端")), className="button small"),
                            id="members-revoke",
                            message="Revoke this member's terminal (lost or stolen)? It is disconnected at once; "
                                    "a new password enables it again. 吊销终端？"),
                        dcc.ConfirmDialogProvider(
                            html.Button(str(Label("Retire member", "离岗")), className="button small danger"),
                            id="members-retire",
                            message="Retire this member? Their terminal and phones are refused at once. 确认离岗？"),
                    ]),
                ]),
                ui.result("members"),
            ]),
            html.Section(className="wall-panel", children=[
                html.H2(str(Label("Members", "网格员"))),
                dcc.Input(id="members-search", type="search", debounce=True, className="registry-search",
                          placeholder=str(Label("search name, id, terminal or grid", "搜索姓名、编号、终端或网格"))),
                html.Div(id="members-table", children=members_table(state, scope, "")),
            ]),
        ]),
    ])


PAGE = page("/members", TITLE, rc.ADMINS, layout, nav=False, order=110, section=ui.SECTION)


def members_table(state, scope: Scope, search: str):
    rows, total = state.queries.registry_members(scope, (search or "").strip(), ui.SHOWN_ROWS)
    body = [html.Tr(id=f"members-row-{member_id}", children=[
        html.Td([html.Div(name, className="admin-name"), html.Div(member_id, className="audit-dim")]),
        html.Td(str(ROLE_LABELS.get(role, role))),         # a str enum: its value looks it up
        html.Td([html.Div(state.queries.org_name(grid)), html.Div(grid, className="audit-dim")]),
        html.Td([html.Div(terminal_id),
                 html.Div(f"+{phones} {str(Label('phone(s)', '部手机'))}", className="audit-dim") if phones else None]),
        html.Td(html.Button(str(Label("Change…", "修改…")), className="button small",
                            id={"type": "members-pick", "member": member_id})),
    ]) for member_id, name, role, grid, terminal_id, phones in rows]
    head = [Label("Member", "网格员"), Label("Role", "角色"), Label("Grid", "网格"), Label("Terminal", "终端"), ""]
    return [ui.count_line(len(rows), total, Label("members", "名网格员")),
            html.Table(className="data-table", id="members-list", children=[
                html.Thead(html.Tr([html.Th(str(h)) for h in head])), html.Tbody(body)])]


@callback(Output("members-table", "children"), Output("members-edit", "options"),
          Input("members-search", "value"), Input("members-changed", "data"),
          State("shell-url", "search"), prevent_initial_call=True,
          roles=PAGE.roles, why="the members of the scope, searched (authorizes the scope)")
def refresh_table(search, _changed, url_search):
    """The list again, for the org selector's scope (authorized again: a callback is a request),
    and, after a change, the editor's choice of members (the admin's own scope: a member just added
    among them; a search leaves the choice as it is)."""
    identity, scope, why = ui.asked(PAGE, url_search)
    if why:
        return ui.refused(why), []
    state = app_state()
    choice = no_update if ctx.triggered_id == "members-search" else _members(state, ui.own_scope(identity))
    return members_table(state, scope, search or ""), choice


clientside_callback(ClientsideFunction(namespace="gcc", function_name="registryPick"),
                    Output("members-edit", "value"), Input({"type": "members-pick", "member": ALL}, "n_clicks"),
                    prevent_initial_call=True, roles=PAGE.roles, why="a row's Change… picks the member (no data)")


@callback(Output("members-edit-name", "value"), Output("members-edit-role", "value"),
          Output("members-edit-grid", "value"), Output("members-edit-terminal", "children"),
          Input("members-edit", "value"), Input("members-changed", "data"), prevent_initial_call=True,
          roles=PAGE.roles, why="the member chosen, in the editor (authorizes their grid)")
def fill_editor(member_id, _changed):
    """The member chosen, as the registry has them (only within the admin's scope)."""
    state, identity = app_state(), current_identity()
    member = state.queries.registry_member(member_id or "")
    if member is None or not authorize(state.city, identity, PAGE, member[3]):
        return "", None, None, ""
    _, name, role, grid, terminal_id, phones = member
    return (name, role, grid, f"{str(Label('terminal', '终端'))} {terminal_id}"
            + (f" · {str(Label('phones', '手机'))} {', '.join(phones)}" if phones else ""))


def _upload_text(contents: str) -> str:
    """An uploaded file's text: UTF-8 (with or without Excel's BOM), else GBK (Excel's CSV in China)."""
    data = ui.uploaded(contents)
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise RegistryError("the file is neither UTF-8 nor GBK text")


def _import(contents: str, filename: str | None):
    """Through the bus (registry_commands.ImportMembers): only a role that may add members, every
    line's grid inside the admin's scope, every line checked before any is added; one refused
    part-way shows the passwords of the members added before it."""
    result = ui.execute(rc.ImportMembers(_upload_text(contents), filename or ""))
    if not result.ok:
        return ui.refused(result.reason)
    credentials, stopped = result.handed
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["terminal_id", "password", "mqtt_url"])
    url = onboarding.mqtt_url(app_state().settings)
    for credential in credentials:
        writer.writerow([credential.device_id, credential.password, url])
    data = base64.b64encode(out.getvalue().encode("utf-8-sig")).decode()
    return html.Div(className="admin-done", children=html.Div(className="admin-secret", children=[
        ui.refused(str(stopped)) if stopped is not None else None,
        html.Div(f"{str(Label('Done', '完成'))}: {len(credentials)} "
                 f"{str(Label('members imported', '名网格员已导入'))} — "
                 + str(Label("their terminals' passwords, shown once: download them now",
                             "终端密码仅显示一次，请立即下载"))),
        html.A("terminal-passwords.csv", href=f"data:text/csv;base64,{data}", download="terminal-passwords.csv",
               id="members-passwords", className="button small"),
        html.Table(className="data-table", id="members-imported", children=html.Tbody([
            html.Tr([html.Td(c.device_id), html.Td(html.Code(c.password))]) for c in credentials]))]))


@callback(Output("members-result", "children"), Output("members-changed", "data"),
          Input("members-add", "n_clicks"), Input("members-save", "n_clicks"), Input("members-replace", "n_clicks"),
          Input("members-retire", "submit_n_clicks"), Input("members-upload", "contents"),
          Input("members-rotate", "submit_n_clicks"), Input("members-revoke", "submit_n_clicks"),
          State("members-id", "value"), State("members-name", "value"), State("members-role", "value"),
          State("members-grid", "value"), State("members-terminal", "value"),
          State("members-edit", "value"), State("members-edit-name", "value"), State("members-edit-role", "value"),
          State("members-edit-grid", "value"), State("members-new-terminal", "value"),
          State("members-upload", "filename"), State("members-changed", "data"), prevent_initial_call=True,
          roles=PAGE.roles, why="add, import, change, move, new terminal, retire a member (each authorized for the "
              "member's grid, a move for both)",
          changes=MEMBER_ACTIONS)
def change_member(_add, _save, _replace, _retire, upload, _rotate, _revoke, member_id, name, role, grid, terminal_id,
                  edit_id, edit_name, edit_role, edit_grid, new_terminal, filename, changed):
    """Add, import, change or move, a new terminal, the terminal's new password or revocation,
    retire: each authorized for the member's grid (a move: both)."""
    trigger = ctx.triggered_id
    if trigger is None or not ctx.triggered[0]["value"]:
        return no_update, no_update
    state, bump = app_state(), (changed or 0) + 1
    if trigger == "members-upload":
        try:
            return _import(upload, filename), bump
        except RegistryError as exc:          # the upload itself (not whole, not text)
            return ui.refused(str(exc)), no_update
    if trigger == "members-add":
        member_id, terminal_id = (member_id or "").strip(), (terminal_id or "").strip()
        if not (member_id and (name or "").strip() and role and grid and terminal_id):
            return ui.refused(str(Label("fill in the id, name, role, grid and terminal id",
                                        "请填写编号、姓名、角色、网格和终端编号"))), no_update
        return _credential(ui.execute(rc.AddMember(member_id, name.strip(), role, grid, terminal_id)), bump)
    edit_id = edit_id or ""
    if trigger == "members-save":
        row = state.queries.registry_member(edit_id)
        change = rc.ChangeMember(edit_id, (edit_name or "").strip(), edit_role)
        move = rc.MoveMember(edit_id, edit_grid) if edit_grid and (row is None or edit_grid != row[3]) else None
        for command in (rc.ChangeMember(edit_id), move):      # both authorized before either is done
            refused = command and state.commands.check(current_identity(), command, request.remote_addr)
            if refused:
                return ui.refused(refused.reason), no_update
        said = []
        if change.name and row is not None and (change.name, edit_role) != (row[1], row[2]):
            result = ui.execute(change)
            if not result.ok:
                return ui.refused(result.reason), no_update
            said.append(f"{edit_id}: {change.name}, {edit_role}")
        if move is not None:
            result = ui.execute(move)
            if not result.ok:
                if not said:
                    return ui.refused(result.reason), no_update
                return ui.refused(f"{'; '.join(said)} saved, but the move was refused: {result.reason}"), bump
            said.append(f"{edit_id} → {state.queries.org_name(edit_grid)}")
        return (ui.done("; ".join(said)) if said else ui.done(str(Label("nothing changed", "没有改动"))), bump)
    if trigger == "members-replace":
        if not (new_terminal or "").strip():
            return ui.refused(str(Label("type the new terminal's id", "请填写新终端编号"))), no_update
        return _credential(ui.execute(rc.ReplaceTerminal(edit_id, new_terminal.strip())), bump)
    if trigger in ("members-rotate", "members-revoke"):
        row = state.queries.registry_member(edit_id)
        terminal = row[4] if row else edit_id
        if trigger == "members-rotate":
            return _credential(ui.execute(rc.RotateCredential(terminal)), bump)
        return _said(ui.execute(rc.RevokeCredential(terminal)), f"{terminal} {Label('revoked', '已吊销')}", bump)
    return _said(ui.execute(rc.RetireMember(edit_id)), f"{edit_id} {Label('retired', '已离岗')}", bump)


def _credential(result, bump):
    """A terminal's new password, shown once with its broker; or why not."""
    if not result.ok:
        return ui.refused(result.reason), no_update
    return ui.secret("members", result.handed, ui.mqtt_settings(result.handed)), bump


def _said(result, text: str, bump):
    return (ui.done(text), bump) if result.ok else (ui.refused(result.reason), no_update)

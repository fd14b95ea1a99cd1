"""People and wall screens, for admins: who may sign in, with which role, over which org unit, and
the tokens the wall screens sign in with.

Every change goes through dashboard/commands.py (authorized for the target's org unit, written
with its audit row in one transaction). A password or a token is generated on the server and
shown once, here, to the admin who asked; it is stored only as a hash. Disabling a user ends
every session of theirs at once; revoking a token disconnects its screens within seconds.
`python -m dashboard.users` does the same from a shell.
"""
from __future__ import annotations

from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from flask import request

from core import freetext
from core.catalogue import Label
from core.city import CITY_TZ
from core.orgcodes import contains
from core.roles import USER_ROLE_LABELS, UserRole
from dashboard.account_commands import (
    ADD_USER,
    CREATE_WALL_TOKEN,
    DISABLE_USER,
    ENABLE_USER,
    NEW_PASSWORD,
    REVOKE_WALL_TOKEN,
    AddUser,
    CreateWallToken,
    NewPassword,
    RevokeWallToken,
    SetUserDisabled,
)
from dashboard.authz import Identity, Scope, current_identity
from dashboard.commands import Result
from dashboard.declarations import callback, page
from dashboard.state import app_state

USER_ACTIONS = (ADD_USER, NEW_PASSWORD, DISABLE_USER, ENABLE_USER)   # what change_user may do
TOKEN_ACTIONS = (CREATE_WALL_TOKEN, REVOKE_WALL_TOKEN)                # and change_token
_NEVER = "–"
LINKED = ("admin", "registry")     # the sections of the pages this page links to (the rules, the registry's)


def layout(state, scope: Scope, kiosk: bool = False):
    identity = current_identity()
    orgs = state.queries.org_options(identity.scope_code if identity else "")
    roles = [{"label": str(label), "value": role.value} for role, label in USER_ROLE_LABELS.items()]
    return html.Div(className="admin", id="admin", children=[
        html.Div(className="dispatch-head", children=[
            html.H1(str(PAGE.label)),
            html.Div(str(Label("people and wall screens; a password or token is shown once",
                               "用户与大屏；密码与令牌只显示一次")), className="dispatch-scope"),
            # the pages reached from here, as they declare themselves (their own label, one name each)
            *[dcc.Link(f"{p.label} →", href=p.path, className="button small", id=f"admin-{p.path.strip('/')}-link")
              for p in state.pages if p.section in LINKED],
        ]),
        html.Div(className="admin-columns", children=[
            html.Section(className="wall-panel", children=[
                html.H2(str(Label("Users", "用户"))),
                html.Div(className="admin-form", children=[
                    dcc.Input(id="admin-new-username", placeholder=str(Label("username", "用户名")), maxLength=40),
                    dcc.Input(id="admin-new-display", placeholder=str(Label("full name", "姓名")),
                              maxLength=freetext.NAME.max_length),
                    dcc.Dropdown(id="admin-new-role", options=roles, value=UserRole.WALL_VIEWER.value,
                                 clearable=False),
                    dcc.Dropdown(id="admin-new-scope", options=orgs, value=orgs[0]["value"] if orgs else "",
                                 clearable=False, searchable=True),
                    html.Button(str(Label("Add user", "新增用户")), id="admin-add-user", className="button"),
                ]),
                html.Div(id="admin-user-result", className="admin-result", role="status"),
                html.Div(id="admin-users", children=users_table(state, identity)),
            ]),
            html.Section(className="wall-panel", children=[
                html.H2(str(Label("Wall screens", "大屏令牌"))),
                html.Div(className="admin-form", children=[
                    dcc.Input(id="admin-new-token-name", maxLength=freetext.NAME.max_length,
                              placeholder=str(Label("where the screen hangs", "大屏位置"))),
                    dcc.Dropdown(id="admin-new-token-scope", options=orgs, value=orgs[0]["value"] if orgs else "",
                                 clearable=False, searchable=True),
                    html.Button(str(Label("Create token", "创建令牌")), id="admin-add-token", className="button"),
                ]),
                html.Div(id="admin-token-result", className="admin-result", role="status"),
                html.Div(id="admin-tokens", children=tokens_table(state, identity)),
            ]),
        ]),
    ])


PAGE = page("/admin", Label("Admin", "管理"), frozenset({UserRole.ADMIN}), layout, order=80)


def _when(value) -> str:
    return value.astimezone(CITY_TZ).strftime("%Y-%m-%d %H:%M") if value else _NEVER


def _org(state, code: str) -> str:
    return state.city.org_name(code) if code else state.city.name


def _mine(identity: Identity | None, scope_code: str) -> bool:
    return identity is not None and contains(identity.scope_code, scope_code)


def users_table(state, identity: Identity | None):
    """The users of the admin's subtree, with what can be done to each."""
    rows = []
    for user in app_accounts().users():
        if not _mine(identity, user["scope_code"]):
            continue
        name = user["username"]
        toggle = "enable" if user["disabled"] else "disable"
        rows.append(html.Tr(className="admin-disabled" if user["disabled"] else "", id=f"admin-user-{name}", children=[
            html.Td([html.Div(name, className="admin-name"), html.Div(user["display_name"], className="audit-dim")]),
            html.Td(str(USER_ROLE_LABELS.get(user["role"], user["role"]))),
            html.Td(_org(state, user["scope_code"])),
            html.Td(str(Label("disabled", "已停用")) if user["disabled"] else str(user["sessions"])),
            html.Td(_when(user["last_login_at"])),
            html.Td(className="admin-actions", children=[
                dcc.ConfirmDialogProvider(
                    html.Button(str(Label("New password", "重置密码")), className="button small"),
                    id={"type": "admin-user", "user": name, "do": "password"},
                    message=f"A new password for {name}: every session of {name} ends. 重置密码？"),
                dcc.ConfirmDialogProvider(
                    html.Button(str(Label("Enable", "启用")) if user["disabled"] else str(Label("Disable", "停用")),
                                className="button small"),
                    id={"type": "admin-user", "user": name, "do": toggle},
                    message=f"{toggle.title()} {name}?" + (" Every session of theirs ends at once." if
                                                           toggle == "disable" else "")),
            ]),
        ]))
    head = [Label("User", "用户"), Label("Role", "角色"), Label("Org unit", "单位"), Label("Sessions", "在线会话"),
            Label("Last sign-in", "最近登录"), ""]
    return html.Table(className="data-table", id="admin-users-table", children=[
        html.Thead(html.Tr([html.Th(str(h)) for h in head])), html.Tbody(rows)])


def tokens_table(state, identity: Identity | None):
    rows = []
    for token in reversed(app_accounts().wall_tokens()):
        if not _mine(identity, token["scope_code"]):
            continue
        revoked = token["revoked_at"] is not None
        rows.append(html.Tr(className="admin-disabled" if revoked else "", id=f"admin-token-{token['id']}", children=[
            html.Td(str(token["id"])),
            html.Td([html.Div(token["name"], className="admin-name"),
                     html.Div(f"{_when(token['created_at'])} · {token['created_by']}", className="audit-dim")]),
            html.Td(_org(state, token["scope_code"])),
            html.Td(_when(token["last_seen_at"])),
            html.Td(f"{str(Label('revoked', '已吊销'))} {_when(token['revoked_at'])} · {token['revoked_by']}" if revoked
                    else dcc.ConfirmDialogProvider(
                        html.Button(str(Label("Revoke", "吊销")), className="button small"),
                        id={"type": "admin-revoke", "token": token["id"]},
                        message=f"Revoke {token['name']}? Its screens are disconnected within seconds. 吊销令牌？")),
        ]))
    head = ["#", Label("Screen", "大屏"), Label("Org unit", "单位"), Label("Last seen", "最近在线"), ""]
    return html.Table(className="data-table", id="admin-tokens-table", children=[
        html.Thead(html.Tr([html.Th(str(h)) for h in head])), html.Tbody(rows)])


def app_accounts():
    return app_state().accounts


def _said(result: Result, secret_label: Label | None = None, secret: str | None = None):
    """What the admin sees after a change: done or why not, and a secret shown this once."""
    if not result.ok:
        return html.Div(f"{str(Label('Refused', '已拒绝'))}: {result.reason}", className="admin-refused")
    children = [html.Div(f"{str(Label('Done', '完成'))}: {result.summary}")]
    if secret:
        children.append(html.Div(className="admin-secret", children=[
            html.Div(f"{secret_label} — " + str(Label("shown once; copy it now", "仅显示一次，请立即复制"))),
            html.Code(secret, id="admin-secret"),
        ]))
    return html.Div(children, className="admin-done")


def _execute(command) -> Result:
    return app_state().commands.execute(current_identity(), command, request.remote_addr)


@callback(Output("admin-user-result", "children"), Output("admin-users", "children"),
          Input("admin-add-user", "n_clicks"),
          Input({"type": "admin-user", "user": ALL, "do": ALL}, "submit_n_clicks"),
          State("admin-new-username", "value"), State("admin-new-display", "value"),
          State("admin-new-role", "value"), State("admin-new-scope", "value"), prevent_initial_call=True,
          roles=PAGE.roles, why="add a user, new password, disable, enable", changes=USER_ACTIONS)
def change_user(_added, _confirmed, username, display, role, scope_code):
    """Add a user, give one a new password, disable or enable one."""
    trigger = ctx.triggered_id
    if trigger is None or not ctx.triggered[0]["value"]:
        return no_update, no_update
    if trigger == "admin-add-user":
        username = (username or "").strip().lower()
        result = _execute(AddUser(username, display or "", role or "", scope_code or ""))
        said = _said(result, Label(f"password of {username}", f"{username} 的密码"), result.reply)
    else:
        name, do = trigger["user"], trigger["do"]
        command = NewPassword(name) if do == "password" else SetUserDisabled(name, do == "disable")
        result = _execute(command)
        said = _said(result, Label(f"new password of {name}", f"{name} 的新密码"), result.reply)
    return said, users_table(app_state(), current_identity())


@callback(Output("admin-token-result", "children"), Output("admin-tokens", "children"),
          Input("admin-add-token", "n_clicks"), Input({"type": "admin-revoke", "token": ALL}, "submit_n_clicks"),
          State("admin-new-token-name", "value"), State("admin-new-token-scope", "value"), prevent_initial_call=True,
          roles=PAGE.roles, why="create or revoke a wall token", changes=TOKEN_ACTIONS)
def change_token(_created, _confirmed, name, scope_code):
    """Create a wall screen's token (its URL shown once) or revoke one."""
    trigger = ctx.triggered_id
    if trigger is None or not ctx.triggered[0]["value"]:
        return no_update, no_update
    if trigger == "admin-add-token":
        result = _execute(CreateWallToken(name or "", scope_code or ""))
        url = f"{request.host_url}wall?kiosk=1&token={result.reply}" if result.reply else None
        said = _said(result, Label("open this once on the screen", "在大屏上打开一次"), url)
    else:
        said = _said(_execute(RevokeWallToken(int(trigger["token"]))))
    return said, tokens_table(app_state(), current_identity())


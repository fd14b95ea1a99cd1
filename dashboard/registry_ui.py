"""What the registry's pages share (members, phones, gateways and sensors, boundaries): their
links to each other, the command bus every change goes through (`execute`: dashboard.registry_commands,
authorized there for the org unit of what it changes, a member's grid, a building's grid, a
community, never trusting what the page listed; audited once, by the registry), and how a
result and a new password are shown."""
from __future__ import annotations

import base64
import binascii

from dash import dcc, html
from flask import request

from core.catalogue import Label
from dashboard.authz import Identity, Scope, asked_scope, authorize, current_identity, scope_of
from dashboard.commands import Result
from dashboard.declarations import Page, query_params
from dashboard.state import app_state
from registry import onboarding
from registry.store import Credential, RegistryError

SHOWN_ROWS = 100     # a list shows this many; the search narrows it

SECTION = "registry"   # the registry's pages declare this section: their links to each other come from it


def execute(command) -> Result:
    """A change through the command bus, by who is asking, from where."""
    return app_state().commands.execute(current_identity(), command, request.remote_addr)


def own_scope(identity: Identity | None) -> Scope:
    """The admin's own org unit (what their pages list and choose from), whatever the URL asks."""
    code = identity.scope_code if identity else ""
    return scope_of(app_state().city, code) or Scope(code, code)


def asked(guarded, search: str | None) -> tuple[Identity | None, Scope | None, str | None]:
    """(who asks, the scope of the URL they may see, None) or (who, None, why not): a list's
    callback authorizes the org selector's scope again."""
    identity = current_identity()
    decision = authorize(app_state().city, identity, guarded, asked_scope(identity, query_params(search)))
    return (identity, decision.scope, None) if decision else (identity, None, decision.reason)


def uploaded(contents: str | None) -> bytes:
    """The bytes of a dcc.Upload's `contents` (a data URL)."""
    try:
        return base64.b64decode((contents or "").split(",", 1)[1], validate=True)
    except (IndexError, binascii.Error):
        raise RegistryError("the upload did not arrive whole; choose the file again") from None


def result(page: str):
    """Where a page says what its change did (id `<page>-result`), with a spinner while a slow one
    runs (a community's CSV: ~0.1 s a member, most of it the broker saving its accounts)."""
    return dcc.Loading(html.Div(id=f"{page}-result", className="admin-result", role="status"), type="dot",
                       delay_show=300)


def refused(reason: str):
    return html.Div(f"{str(Label('Refused', '已拒绝'))}: {reason}", className="admin-refused")


def done(text: str):
    return html.Div(f"{str(Label('Done', '完成'))}: {text}", className="admin-done")


def secret(page: str, credential: Credential, *more):
    """A new password, shown this once (id `<page>-secret`), with what the device needs besides."""
    return html.Div(className="admin-done", children=html.Div(className="admin-secret", children=[
        html.Div(f"{str(Label('password of', '密码'))} {credential.device_id} — "
                 + str(Label("shown once; copy it now", "仅显示一次，请立即复制"))),
        html.Code(credential.password, id=f"{page}-secret", className="registry-secret"), *more]))


def mqtt_settings(credential: Credential):
    """How a terminal or a gateway connects: the broker it reaches, and the login."""
    settings = app_state().settings
    broker = onboarding.mqtt_broker(credential, settings)
    return html.Div(className="registry-settings", children=[
        html.Div([str(Label("broker", "服务器")), html.Code(broker["url"])]),
        html.Div([str(Label("username and client id", "用户名与客户端ID")), html.Code(broker["username"])]),
        html.Div([str(Label("publishes to", "发布主题")), html.Code(broker["publishes"])]),
    ])


def nav(current: Page):
    """The registry's pages (as they declare themselves), the one shown marked; and the way back
    to the admin page."""
    admin = app_state().page_at("/admin")
    return html.Nav(className="registry-nav", children=[
        dcc.Link(f"← {admin.label}", href=admin.path, className="button small"),
        *[html.Span(str(p.label), className="button small registry-here") if p is current else
          dcc.Link(str(p.label), href=p.path, className="button small")
          for p in app_state().pages if p.section == SECTION]])


def head(current: Page, subtitle: Label):
    """A registry page's heading (its declared label: one name on the page, its links and the
    admin page's), with the links to the others."""
    return html.Div(className="dispatch-head", children=[
        html.H1(str(current.label)), html.Div(str(subtitle), className="dispatch-scope"), nav(current)])


def count_line(shown: int, total: int, what: Label):
    return html.Div(f"{total:,} {what}" if total <= shown else
                    f"{str(Label('the first', '前'))} {shown} / {total:,} {what} — "
                    + str(Label("narrow with the search", "请用搜索缩小范围")), className="audit-dim")

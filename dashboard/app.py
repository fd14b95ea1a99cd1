"""The Dash app shell: navigation, the org selector, the page container, and the Socket.IO server.

Routes and navigation come from the pages' own declarations (dashboard.declarations: every module
of dashboard/pages/ declares its page, callbacks and downloads; the shell lists none). Query parameters:
`scope=<org code>` (a district, street, community or grid; empty for the whole city) and `kiosk=1`
(no controls: for the wall nobody touches). Every page is authorized for the identity and scope
by authz.authorize before its layout is built: an org unit outside the identity's subtree is
refused (403), one that does not exist is not found (404); a scope is never silently widened.
Everything is served locally: Dash's bundles, dash-leaflet's, our assets; no CDN, no tiles unless
GCC_TILE_URL names an internal tile server.
"""
from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from urllib.parse import urlencode

import psycopg2
from dash import Dash, Input, Output, State, dcc, html, no_update
from flask import request
from flask_socketio import SocketIO
from flask_wtf.csrf import generate_csrf

from cases.offers import OfferPolicy
from config.settings import REPO_ROOT, Settings
from core.catalogue import AuditAction, Label
from core.roles import EVERYONE, USER_ROLE_LABELS
from dashboard import auth
from dashboard.accounts import Accounts, Policy
from dashboard.authz import Decision, Identity, asked_scope, authorize, current_identity
from dashboard.case_actions import CaseRules
from dashboard.commands import Commands
from dashboard.declarations import Page, callback, declare_route, install_exports, pages, query_params
from dashboard.hub import LiveHub
from dashboard.pages import wall
from dashboard.queries import Queries
from dashboard.state import EXTENSION, AppState, app_state
from database.citydb import CityWatch, read_city
from kpis.indicators import Assessment
from registry.broker import BrokerAdmin
from registry.store import DeviceRegistry

log = logging.getLogger(__name__)

# What a client may send (dashboard/server.py serves these limits; gunicorn bounds request lines and headers):
REQUEST_BODY_MAX_BYTES = 1024 * 1024      # a callback's inputs (Flask answers 413 beyond)
SOCKET_MESSAGE_MAX_BYTES = 64 * 1024      # one Socket.IO message; a screen only sends its connect and pongs
SOCKET_PING_S = 10                        # a socket that answers no ping for twice this is closed


# the routes Dash (and Flask) register themselves, and who may use them; ours declare theirs where
# they are registered (dashboard.auth: /login, /logout, /healthz; the pages' downloads)
DASH_ROUTES = {
    "/assets/<path:filename>": (None, "our stylesheets and scripts (no data; the login page's style)"),
    "/static/<path:filename>": (None, "Flask's static folder (unused, nothing in it)"),
    "/_favicon.ico": (None, "the icon"),
    "/_dash-component-suites/<string:package_name>/<path:fingerprinted_path>": (EVERYONE, "Dash's scripts"),
    "/_dash-layout": (EVERYONE, "the shell's layout (no data: the pages come from route())"),
    "/_dash-dependencies": (EVERYONE, "the callback graph"),
    "/_dash-update-component": (EVERYONE, "every server callback; each is checked against its declaration"),
    "/_reload-hash": (EVERYONE, "Dash's hot reload (off in production)"),
    "/": (EVERYONE, "the shell; route() authorizes the page and the scope"),
    "/<path:path>": (EVERYONE, "the shell; route() authorizes the page and the scope"),
}


def shell():
    return html.Div(id="shell", children=[dcc.Location(id="shell-url", refresh=False),
                                          html.Div(id="shell-page-root")])


def header(state: AppState, identity: Identity, current: Page | None, scope: str):
    nav = [dcc.Link(str(page.label), href=f"{page.path}?{urlencode({'scope': scope})}" if scope else page.path,
                    className="active" if page is current else "")
           for page in state.pages if page.nav and authorize(state.city, identity, page, scope)]
    return html.Div(className="shell-header", id="shell-header", children=[
        html.Div(className="shell-title", children=[html.Span("Grid Command Center ", className="shell-title-en"),
                                                    html.Span("网格化指挥中心")]),
        html.Nav(className="shell-nav", id="shell-nav", children=nav),
        dcc.Dropdown(id="shell-org", className="shell-org", options=state.queries.org_options(identity.scope_code),
                     value=scope, clearable=False, searchable=True),
        who_am_i(state, identity),
    ])


def who_am_i(state: AppState, identity: Identity):
    """Who is signed in, in which role and over which org unit, and the way out."""
    role = USER_ROLE_LABELS.get(identity.role) if identity.role else None
    where = state.city.org_name(identity.scope_code) if identity.scope_code else state.city.name
    return html.Div(className="shell-who", id="shell-who", children=[
        html.Div(className="shell-who-text", children=[
            html.Span(identity.display_name or identity.user, className="shell-who-name", id="shell-who-name"),
            html.Span(f"{role} · {where}", className="shell-who-role", id="shell-who-role"),
        ]),
        html.Form(method="post", action="/logout", className="shell-logout", children=[
            dcc.Input(type="hidden", name="csrf_token", value=generate_csrf()),
            html.Button(str(Label("Sign out", "退出")), type="submit", id="shell-logout"),
        ]),
    ])


def refusal(decision: Decision):
    title = "Not found 未找到" if decision.status == 404 else "Not allowed 无权访问"
    return html.Div(className="placeholder refusal", id="shell-refusal", children=[
        html.H1(f"{decision.status} · {title}"), html.P(decision.reason)])


@callback(Output("shell-page-root", "children"), Output("shell", "className"),
          Input("shell-url", "pathname"), Input("shell-url", "search"),
          roles=EVERYONE, why="the router: header and page from the URL (authorizes the page and scope)")
def route(pathname, search):
    """The header (with the org selector showing the scope) and the page, both from the URL alone."""
    state, identity = app_state(), current_identity()
    params = query_params(search)
    kiosk = params.get("kiosk") == "1"
    page = state.page_at(pathname)
    if page is None:
        decision = Decision(False, f"there is no page {pathname}", status=404)
        page = state.pages[0]   # the header's navigation still shows where one can go
    else:
        scope_code = asked_scope(identity, params)
        decision = authorize(state.city, identity, page, scope_code)
        if not decision:
            state.commands.record(identity, AuditAction.PAGE_OPEN, "refused", decision.reason,
                                  f"page:{page.path}?scope={scope_code}", request.remote_addr)
    if identity is None:          # the gate lets nobody unsigned this far; should it, nothing is shown
        return refusal(decision), ""
    extra = {"params": params} if page.takes_params else {}
    body = page.layout(state, decision.scope, kiosk, **extra) if decision else refusal(decision)
    children = [html.Div(body, id="shell-page", className="shell-page")]
    if not kiosk:   # refused: the selector shows the identity's own unit, never the refused one
        scope = decision.scope.code if decision else identity.scope_code
        children.insert(0, header(state, identity, page if decision else None, scope))
    return children, "kiosk" if kiosk else ""


@callback(Output("shell-url", "search"), Input("shell-org", "value"), State("shell-url", "search"),
          prevent_initial_call=True,
          roles=EVERYONE, why="the org selector writes the scope into the URL (route() checks it)")
def choose_org(code, search):
    params = query_params(search)
    if params.get("scope", "") == (code or ""):
        return no_update
    params["scope"] = code or ""
    return "?" + urlencode({k: v for k, v in params.items() if v})


def create_app(settings: Settings) -> tuple[Dash, SocketIO, LiveHub]:
    conn = psycopg2.connect(settings.pg_dsn)
    try:
        city = read_city(conn)
    finally:
        conn.close()
    CityWatch(settings.pg_dsn, city).start()   # the registry's changes, while it runs (adopted in place)
    client = settings.redis_client(socket_timeout=10)   # the dashboard's own Redis user
    declared = pages()
    queries = Queries(city, client, settings.pg_dsn, settings.cases_time_scale, settings.automatic_categories())
    policy = Policy(idle=timedelta(minutes=settings.dashboard_session_idle_min),
                    absolute=timedelta(hours=settings.dashboard_session_hours))
    accounts = Accounts(settings.pg_dsn, policy)
    registry = DeviceRegistry(settings.pg_dsn, BrokerAdmin.from_settings(settings))
    commands = Commands(city, client, settings.pg_dsn, place_name=queries.building_name, accounts=accounts,
                        registry=registry)
    case_rules = CaseRules(commands, settings.cases_time_scale, settings.cases_warn_fraction,
                           OfferPolicy.from_settings(settings))
    assessment = Assessment.configured(settings.kpi_score, settings.kpi_grades)   # a bad formula stops the start
    state = AppState(settings, city, queries, commands, declared, accounts, case_rules, assessment)
    app = Dash(__name__, assets_folder=str(REPO_ROOT / "assets"), serve_locally=True, title="Grid Command Center",
               update_title=None, suppress_callback_exceptions=True)
    app.server.extensions[EXTENSION] = state
    app.server.config["MAX_CONTENT_LENGTH"] = REQUEST_BODY_MAX_BYTES
    secret_key = settings.dashboard_secret_key.get_secret_value()
    if not secret_key:
        log.warning("GCC_DASHBOARD_SECRET_KEY is not set: a random key for this start (sessions end at restart)")
        secret_key = secrets.token_urlsafe(32)
    wall.use_key_secret(secret_key)            # the wall keys its members and reports with it
    auth.install(app.server, accounts, commands.record, secret_key, settings.dashboard_secure_cookies,
                 policy.wall_absolute)
    auth.trust_proxies(app.server, settings.dashboard_proxy_hops)
    for rule, (roles, why) in DASH_ROUTES.items():
        declare_route(app.server, rule, roles, why)
    install_exports(app.server)
    app.layout = shell
    # same-origin sockets only; WebSocket only (the screens never poll), so a screen's socket is
    # the TCP connection it came on, which the hub can cut off when the screen stops reading
    socketio = SocketIO(app.server, async_mode="threading", transports=["websocket"],
                        max_http_buffer_size=SOCKET_MESSAGE_MAX_BYTES, ping_interval=SOCKET_PING_S,
                        ping_timeout=SOCKET_PING_S)
    hub = LiveHub(socketio, city, queries, declared, client, settings.frame_interval_s, accounts=accounts,
                  audit=commands.record)
    return app, socketio, hub

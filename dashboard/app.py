"""The Dash app shell: navigation, the org selector, the page container, and the Socket.IO server.

Screens: /wall (also /), /dispatch, /kpis. Query parameters: `scope=<org code>` (district, street or
community; empty for the whole city) and `kiosk=1` (no controls: for the wall nobody touches).
Everything is served locally: Dash's bundles, dash-leaflet's, our assets; no CDN, no tiles unless
GCC_TILE_URL names an internal tile server.
"""
from __future__ import annotations

from urllib.parse import parse_qs, urlencode

import psycopg2
import redis
from dash import Dash, Input, Output, State, callback, dcc, html, no_update
from flask_socketio import SocketIO

from config.settings import REPO_ROOT, Settings
from dashboard import context
from dashboard.live import LiveHub
from dashboard.pages import dispatch, kpis, wall
from dashboard.queries import Queries
from database.citydb import read_city

PAGES = {"/": ("Wall 大屏", wall), "/wall": ("Wall 大屏", wall), "/dispatch": ("Dispatch 调度", dispatch),
         "/kpis": ("KPIs 考核", kpis)}
NAV = [("/wall", "Wall 大屏"), ("/dispatch", "Dispatch 调度"), ("/kpis", "KPIs 考核")]


def _params(search: str | None) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items()}


def shell(queries: Queries):
    return html.Div(id="shell", children=[dcc.Location(id="shell-url", refresh=False),
                                          html.Div(id="shell-page-root")])


def header(queries: Queries, pathname: str, scope: str):
    nav = [dcc.Link(label, href=f"{path}?{urlencode({'scope': scope})}" if scope else path,
                    className="active" if pathname == path or (pathname == "/" and path == "/wall") else "")
           for path, label in NAV]
    return html.Div(className="shell-header", id="shell-header", children=[
        html.Div("Grid Command Center 网格化指挥中心", className="shell-title"),
        html.Nav(className="shell-nav", id="shell-nav", children=nav),
        dcc.Dropdown(id="shell-org", className="shell-org", options=queries.org_options(), value=scope,
                     clearable=False, searchable=True),
    ])


@callback(Output("shell-page-root", "children"), Output("shell", "className"),
          Input("shell-url", "pathname"), Input("shell-url", "search"))
def route(pathname, search):
    """The header (with the org selector showing the scope) and the page, both from the URL alone."""
    params = _params(search)
    kiosk = params.get("kiosk") == "1"
    pathname = pathname if pathname in PAGES else "/"
    _, page = PAGES[pathname]
    scope = params.get("scope", "")
    if context.queries().scope(scope) is None:
        scope = ""
    children = [html.Div(page.layout(scope, kiosk), id="shell-page", className="shell-page")]
    if not kiosk:
        children.insert(0, header(context.queries(), pathname, scope))
    return children, "kiosk" if kiosk else ""


@callback(Output("shell-url", "search"), Input("shell-org", "value"), State("shell-url", "search"),
          prevent_initial_call=True)
def choose_org(code, search):
    params = _params(search)
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
    client = redis.Redis(host=settings.redis_host, port=settings.redis_port,
                         password=settings.redis_password.get_secret_value(), socket_timeout=10)
    context.QUERIES = Queries(city, client, settings.pg_dsn)
    context.TILE_URL = settings.tile_url
    app = Dash(__name__, assets_folder=str(REPO_ROOT / "assets"), serve_locally=True, title="Grid Command Center",
               update_title=None, suppress_callback_exceptions=True)
    app.layout = lambda: shell(context.queries())
    socketio = SocketIO(app.server, async_mode="threading")  # same-origin sockets only
    hub = LiveHub(socketio, context.queries(), client, settings.frame_interval_s)
    return app, socketio, hub

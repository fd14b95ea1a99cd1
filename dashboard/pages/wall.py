"""The wall display: a big screen nobody touches. Live map of members, sensors in alarm and
reports over the grids, a heatmap, headline counters, a ticker and the queue of open items.

Its feed takes members' fixes and statuses, device alarms (and their acknowledgements) and
reports; each travels with only the fields the wall draws (no report text, photo or terminal id:
members and reports are keyed by keyed hashes; an alarm carries how many in its building need help
first, a count and never a name: ledger.scene). Every role that may open the wall gets the same.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from functools import lru_cache

import dash_leaflet as dl
from dash import ClientsideFunction, Input, Output, State, dcc, html
from dash_extensions.javascript import Namespace

from core.catalogue import Label, Severity
from core.roles import EVERYONE
from dashboard import live_ui, scene_panel
from dashboard.authz import Scope
from dashboard.declarations import clientside_callback, page
from dashboard.feeds import Feed, Periodic
from dashboard.queries import start_of_local_day
from dashboard.vocabulary import legend
from telemetry import live

ns = Namespace("gcc", "wall")
EMPTY = {"type": "FeatureCollection", "features": []}
HEAT_EVERY_S = 60.0
_KEY_SECRET = {"secret": os.urandom(32)}   # see use_key_secret
# Reports the wall holds at most (the snapshot's and the browser's): the most severe, newest first.
# A day of a big city's reports fits many times over; a flood of them (handsets gone rogue) cannot
# make snapshots and browsers grow without bound, nor push the severe ones off the wall.
WALL_REPORTS_MAX = 1000


# --- the feed: what the wall receives, in the form it draws --------------------------------------------
@lru_cache(maxsize=65536)   # every fix of every frame: one HMAC per member, not per fix
def member_key(terminal_id: str) -> str:
    """What the wall keys a member by: a keyed hash of their own terminal's id (the wall shows names
    and roles, never terminal ids; see report_key for the key's lifetime). A fix from a member's
    phone moves the same marker (Queries.own_terminal): one member, one marker, at their latest fix."""
    return _keyed("member:" + terminal_id, 16)


# A fix travels as a list of these fields' values, in this order: the snapshot names them (fix_fields),
# and the browser reads each value by its name (assets/wall.js), so the order is spelled here only.
FIX_FIELDS = ("member", "lon", "lat", "t", "battery_pct", "grid_code")


def wire_fix(q, c: live.FixChange) -> list:
    """Compact, two frames a second for thousands of members: names and roles come with the snapshot.
    The values of FIX_FIELDS."""
    return [member_key(q.own_terminal(c.terminal_id)), round(c.lon, 6), round(c.lat, 6), c.t, c.battery_pct,
            c.grid_code]


def wire_status(q, c: live.StatusChange) -> dict:
    """A member's status, for screens that know terminals (the dispatcher console)."""
    return {"terminal_id": c.terminal_id, "state": c.state, "t": c.t, "battery_pct": c.battery_pct, "sos": c.sos}


def wall_status(q, c: live.StatusChange) -> dict | None:
    """The same, keyed as the wall keys members (no terminal id). A member's state and SOS are their
    own terminal's (the one tasks and SOS go through): a phone's status is not the wall's (its
    fixes still move the member's marker), or a phone falling silent would hide the terminal's SOS."""
    if q.own_terminal(c.terminal_id) != c.terminal_id:
        return None
    status = wire_status(q, c)
    return {"member": member_key(status.pop("terminal_id")), **status}


def use_key_secret(dashboard_secret: str) -> None:
    """Key the wall's hashes from the deployment's secret (create_app): stable across restarts, and
    known to nobody outside the server. Without one, a random key per process."""
    _KEY_SECRET["secret"] = hmac.new(dashboard_secret.encode(), b"wall keys", hashlib.sha256).digest()
    member_key.cache_clear()


def _keyed(text: str, length: int) -> str:
    return hmac.new(_KEY_SECRET["secret"], text.encode(), hashlib.sha256).hexdigest()[:length]


def report_key(c: live.ReportChange) -> str:
    """What the screens key a report by: it is (terminal, report id), as in the live state, but the
    wall must not learn the terminal, so the key is a keyed hash of both."""
    return _keyed(live.Keys.report_member(c.terminal_id, c.report_id), 20)


def wire_alarm(q, c: live.AlarmChange) -> dict:
    # an alarm is (sensor, alarm id): two sensors may use the same id, neither hides the other
    return {"key": live.Keys.alarm_field(c.sensor_id, c.alarm_id), "alarm_id": c.alarm_id, "sensor_id": c.sensor_id,
            "alarm_type": c.alarm_type, "severity": c.severity, "state": c.state, "t": c.t,
            "grid_code": c.grid_code, "lon": c.lon, "lat": c.lat, "where": q.building_name(c.building_id),
            "acknowledged_by": c.acknowledged_by,
            # who needs help first in its building: a count, never a name (the wall is a kiosk)
            "needs_help": scene_panel.alarm_count(q, c.building_id)}


def wire_alarm_ack(q, c: live.AlarmAckChange) -> dict:
    return {"key": live.Keys.alarm_field(c.sensor_id, c.alarm_id), "alarm_id": c.alarm_id, "sensor_id": c.sensor_id,
            "t": c.t, "acknowledged_by": c.acknowledged_by}


def wire_report(q, c: live.ReportChange) -> dict:
    return {"key": report_key(c), "category": c.category, "severity": c.severity,
            "t": c.t, "lon": c.lon, "lat": c.lat, "grid_code": c.grid_code,
            "where": c.address or q.org_name(c.grid_code)}


def wire_case(q, c: live.CaseChange) -> dict:
    """A case in the escalation queue: what it is, where, whose, and its clock (the browser counts down)."""
    return {"key": c.case_id, "state": c.state, "category": c.category, "urgency": c.urgency, "source": c.source,
            "title": c.title, "where": c.place or q.org_name(c.grid_code or c.org_code), "stage": c.stage,
            "deadline": c.deadline, "warn_at": c.warn_at, "level": c.escalation_level, "handler": c.handler_name,
            "acknowledged": c.acknowledged, "closed_at": c.closed_at, "t": c.t, "grid_code": c.grid_code,
            "lon": c.lon, "lat": c.lat, "unassigned": c.unassigned,
            # an SOS: its member as the wall keys members (no terminal id), so its marker can pulse there
            "sos_member": member_key(q.own_terminal(c.sos_member)) if c.sos_member else None}


MEMBER_FIELDS = ("member", "name", "role", "home_grid_code", "grid_code", "lon", "lat", "t", "state", "state_t",
                 "battery_pct", "sos")


def wall_member(q, m) -> list:
    """A member on the map (snapshot), compact like the fixes: the values of MEMBER_FIELDS (the
    snapshot names them once, for 10,000 members)."""
    member = q.member(m.terminal_id)
    return [member_key(member.terminal_id), member.name, member.role.value, member.grid_code, m.grid_code,
            round(m.lon, 6), round(m.lat, 6), m.t, m.state, m.state_t, m.battery_pct, m.sos]


def wall_reports(q, scope: Scope) -> dict:
    """The reports of the day in scope, at most WALL_REPORTS_MAX of them (the most severe, newest
    first), and how many there are in all (the wall says when it shows fewer)."""
    recent = q.recent_reports(scope)
    kept = sorted(recent, key=lambda r: (r.severity, r.t), reverse=True)[:WALL_REPORTS_MAX]
    return {"reports": [wire_report(q, r) for r in kept], "reports_total": len(recent),
            "reports_max": WALL_REPORTS_MAX, "report_window_s": live.REPORT_WINDOW_S}


def snapshot(q, scope: Scope) -> dict:
    """Everything the wall needs to (re)draw its scope from scratch."""
    in_scope = q.members(scope)
    live_members = q.members_latest(in_scope)
    on_map = {q.own_terminal(m.terminal_id) for m in live_members}
    alarms = q.open_alarms(scope)
    scene_panel.prime_counts(q, [a.building_id for a in alarms])     # one query for every alarm's count
    return {"member_fields": MEMBER_FIELDS, "fix_fields": FIX_FIELDS,
            "members": [wall_member(q, m) for m in live_members],
            "roster": [[member_key(m.terminal_id), m.name, m.role.value, m.grid_code] for m in in_scope
                       if m.terminal_id not in on_map],
            "grids": q.grid_codes(scope), "bounds": q.bounds(scope), "member_total": len(in_scope),
            "alarms": [wire_alarm(q, a) for a in alarms],
            **wall_reports(q, scope),
            "cases": [wire_case(q, c) for c in q.open_cases(scope)], "day_start": start_of_local_day().timestamp(),
            "time_scale": q.case_time_scale,
            "closures_today": q.closures_today(scope), "heat": q.heat_all(scope)}


FEED = Feed("wall", wire={"fix": wire_fix, "status": wall_status, "alarm": wire_alarm, "alarm_ack": wire_alarm_ack,
                          "report": wire_report, "case": wire_case},
            snapshot=snapshot, periodic=(Periodic("heat", HEAT_EVERY_S, lambda q, scope: q.heat_all(scope)),))


# --- the screen ------------------------------------------------------------------------------------------
def _time_scale_note(state) -> str:
    """Said on the wall whenever case clocks do not run in real time (a demo's shortened limits)."""
    scale = state.queries.case_time_scale
    return "" if scale == 1 else str(Label(f"demo clock: case limits ×{scale:.3g}", "演示时钟：时限已缩短"))


def layout(state, scope: Scope, kiosk: bool = False):
    q = state.queries
    layers = [dl.GeoJSON(id="wall-grids", data=q.grids_geojson(scope), style=ns("gridStyle"), hideout={"counts": {}}),
              dl.GeoJSON(id="wall-heat", data=EMPTY, style=ns("heatStyle"), interactive=False),
              dl.GeoJSON(id="wall-reports", data=EMPTY, pointToLayer=ns("reportMarker")),
              dl.GeoJSON(id="wall-members", data=EMPTY, pointToLayer=ns("memberMarker")),
              dl.GeoJSON(id="wall-alarms", data=EMPTY, pointToLayer=ns("alarmMarker")),
              dl.GeoJSON(id="wall-cases", data=EMPTY, pointToLayer=ns("caseMarker"))]
    if state.tile_url:
        layers.insert(0, dl.TileLayer(url=state.tile_url))
    legend_entries = legend(severities=(Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM))
    return html.Div(className="wall", id="wall", children=[
        # the scope in the URL too: a new scope means a new URL, so the component opens a new socket
        dcc.Interval(id="wall-clock", interval=1000),        # countdowns and overdue marks move on between frames
        live_ui.socket("wall", FEED, scope.code, events=("snapshot", "frame", "heat")),
        html.Div(className="wall-headline", children=[
            html.Div(id="wall-counters", style={"display": "contents"}),
            html.Div(className="wall-scope", children=[
                html.Div(scope.name, id="wall-scope-name"),
                html.Div(_time_scale_note(state), className="wall-time-scale", id="wall-time-scale"),
                live_ui.badge("wall")]),
        ]),
        html.Div(className="wall-map-pane", children=[
            dl.Map(id="wall-map", className="wall-map", preferCanvas=True, bounds=q.bounds(scope), trackViewport=False,
                   zoomSnap=0.25, zoomControl=not kiosk, attributionControl=False, children=layers),
            html.Div(className="wall-legend", children=[html.Span([html.I(style={"background": c}), label])
                                                        for c, label in legend_entries]),
            dcc.RadioItems(id="wall-window", className="wall-window", value="today", inline=True,
                           options=[{"label": f" {Label('today', '今日')} ", "value": "today"},
                                    {"label": f" {Label('last hour', '近1小时')}", "value": "hour"}]),
        ]),
        html.Div(className="wall-side", children=[
            html.Div(className="wall-panel", children=[
                html.H2(str(Label("Cases · overdue first", "督办队列"))),
                html.Div(id="wall-queue")]),
            html.Div(className="wall-panel", children=[
                html.H2(str(Label("Live · alarms and reports", "实时动态"))), html.Div(id="wall-ticker")]),
        ]),
    ])


PAGE = page("/wall", Label("Wall", "大屏"), EVERYONE, layout, feed=FEED, aliases=("/",), order=10)

clientside_callback(
    ClientsideFunction(namespace="gcc", function_name="wallLive"),
    Output("wall-members", "data"), Output("wall-alarms", "data"), Output("wall-reports", "data"),
    Output("wall-grids", "hideout"), Output("wall-cases", "data"), Output("wall-counters", "children"),
    Output("wall-queue", "children"),
    Output("wall-ticker", "children"), Output("wall-heat", "data"), Output("wall-map", "invalidateSize"),
    Output("wall-map", "viewport"),
    Output("wall-socket", "url"),
    Input("wall-socket", "data-snapshot"), Input("wall-socket", "data-frame"), Input("wall-clock", "n_intervals"),
    State("wall-window", "value"), State("wall-socket", "url"),
    prevent_initial_call=True,
    roles=PAGE.roles, why="the wall's live layers and lists",
)

clientside_callback(
    ClientsideFunction(namespace="gcc", function_name="wallHeat"),
    Output("wall-heat", "data", allow_duplicate=True),
    Input("wall-socket", "data-heat"), Input("wall-window", "value"),
    prevent_initial_call=True,
    roles=PAGE.roles, why="the heat map's periodic push",
)

live_ui.show_connection("wall", PAGE.roles)

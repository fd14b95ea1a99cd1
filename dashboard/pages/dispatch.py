"""The dispatcher console: the cases to dispatch, the nearest available members for the one chosen,
and the offers in progress; beside them the open device alarms, the members by status and the
terminals' task acknowledgements. Live (its feed: cases, statuses, task acknowledgements, alarms,
never the 2 Hz fixes).

- **The dispatch queue** (left): the cases of the scope that wait for a dispatcher — to register,
  to dispatch (an unassigned one first: its offers ran out), offered and not yet accepted — SOS
  first, then overdue, urgent, by time left; a live countdown each.
- **Candidates** (right) for the case chosen: dispatch.candidates ranks the members near it who
  work inside the viewer's own scope (available first, the role that fits, its grid, then its
  community, then beyond, workload, distance), each with its ETA and why it ranks there (the
  server filters: a street's dispatcher is never sent the next street's members); **Offer** sends
  the case to that member's terminal (an offer that expires if not accepted, then goes to the next
  candidate: cases.offers).
  The map (centre) shows the case and its candidates, numbered. Above them, compact, who in the
  case's building needs help first (dashboard.scene_panel: names only for those allowed to see them).
- Keyboard first: ↑/↓ move through the queue, Enter registers a reported case and offers a
  registered one to candidate 1, a digit to candidate N, Esc lets go of the case.
- **Tasks in progress** (right): the cases offered, en route, on scene and done (awaiting
  verification), live; chosen, a case in progress shows where its handler is (their marker on the
  map, how far from the place), can be withdrawn while offered, and reassigned to one of the next
  candidates in one step (dashboard.case_actions.Reassign).
- **Check on site** (紧急核实): for a case raised by an alarm or an SOS, the chosen case shows the
  checks asked and the members' answers (outcome, note, photos) and offers to ask the nearest
  available member of the case's grid (or the next ones) to check it (dashboard.case_checks).
- A category in automatic mode (GCC_DISPATCH_AUTOMATIC) is offered by the cases engine itself once
  registered; the console says so. Off-duty members (the duty roster) are never candidates.

Every action goes through dashboard/commands.py (authorized for the case's org unit, audited).
"""
from __future__ import annotations

import math
import time
from datetime import datetime, timezone

import dash_leaflet as dl
from dash import (
    ALL,
    ClientsideFunction,
    Input,
    Output,
    State,
    ctx,
    dcc,
    html,
    no_update,
)
from dash_extensions.javascript import Namespace
from flask import request

from cases.model import Dispatch, Register, RequestCheck, Return
from cases.model import State as CaseState
from core.catalogue import CASE_CATEGORY_LABELS, Label
from core.roles import ROLE_LABELS, UserRole
from dashboard import live_ui, photos, scene_panel
from dashboard.alarms import ACKNOWLEDGE_ALARM, AcknowledgeAlarm
from dashboard.authz import Scope, authorize, current_identity
from dashboard.case_actions import CASE_ACTIONS, REASSIGN, CaseAction, Reassign
from dashboard.case_checks import CHECKABLE, REQUEST_CHECK, RequestCaseCheck, check_list, default_checker, not_to_ask
from dashboard.declarations import callback, clientside_callback, page
from dashboard.feeds import Feed
from dashboard.pages.cases import local
from dashboard.pages.wall import wire_alarm, wire_alarm_ack, wire_case, wire_status
from dashboard.state import app_state
from dispatch.candidates import Settings as SearchSettings
from dispatch.candidates import distance_m, find, live_of
from dispatch.status import STATUS_LABELS
from telemetry import live

CANDIDATES_SHOWN = 9            # a digit key picks one
CHECKERS_SHOWN = 3              # members offered to check a case on site: the default, then the next nearest
CANDIDATES_EVERY_MS = 5000      # the candidates of the case chosen are looked for again this often
EMPTY = {"type": "FeatureCollection", "features": []}
REASSIGNABLE = frozenset({CaseState.DISPATCHED, CaseState.ACCEPTED, CaseState.HANDLING})
REASSIGN_SHOWN = 5              # someone else for a case in progress
TASK_WORDS = {CaseState.ACCEPTED: "accepted, on the way", CaseState.HANDLING: "on scene, handling",
              CaseState.HANDLED: "done, awaiting verification"}


def wire_task_ack(q, c: live.TaskAckChange) -> dict:
    member = q.member(c.terminal_id)
    return {"task_id": c.task_id, "terminal_id": c.terminal_id, "name": member.name if member else c.terminal_id,
            "action": c.action, "note": c.note, "t": c.t}


def snapshot(q, scope: Scope) -> dict:
    in_scope = q.members(scope)
    states = {m.terminal_id: m for m in q.members_live(in_scope)}
    members = []
    for m in in_scope:
        known = states.get(m.terminal_id)   # None: never heard of since the live state began
        members.append({"terminal_id": m.terminal_id, "name": m.name, "role": m.role.value,
                        "home_grid_code": m.grid_code, "state": known.state if known else None,
                        "state_t": known.state_t if known else 0, "sos": known.sos if known else False})
    return {"members": members, "alarms": [wire_alarm(q, a) for a in q.open_alarms(scope)],
            "cases": [wire_case(q, c) for c in q.open_cases(scope)],
            "automatic": sorted(q.automatic)}


FEED = Feed("dispatch", wire={"status": wire_status, "task_ack": wire_task_ack, "alarm": wire_alarm,
                              "alarm_ack": wire_alarm_ack, "case": wire_case}, snapshot=snapshot)


def layout(state, scope: Scope, kiosk: bool = False):
    ns = Namespace("gcc", "dispatch")
    q = state.queries
    layers = [dl.GeoJSON(id="dispatch-grids", data=q.grids_geojson(scope), style=ns("gridStyle")),
              dl.GeoJSON(id="dispatch-cand-layer", data=EMPTY, pointToLayer=ns("candidateMarker"))]
    if state.tile_url:
        layers.insert(0, dl.TileLayer(url=state.tile_url))
    return html.Div(className="dispatch", id="dispatch", children=[
        live_ui.socket("dispatch", FEED, scope.code),
        dcc.Store(id="dispatch-selected"),
        dcc.Interval(id="dispatch-clock", interval=1000),
        dcc.Interval(id="dispatch-cand-tick", interval=CANDIDATES_EVERY_MS),
        html.Div(className="dispatch-head", children=[
            html.H1(str(Label("Dispatcher console", "调度台"))),
            html.Div(scope.name, id="dispatch-scope-name", className="dispatch-scope"),
            live_ui.badge("dispatch"),
            html.Span("↑↓ case · Enter offer to #1 · 1–9 offer to #N · Esc", className="dispatch-keys"),
            html.Div(id="dispatch-result", className="dispatch-result", role="status"),
        ]),
        html.Div(className="dispatch-columns", children=[
            html.Section(className="wall-panel dispatch-queue-panel", children=[
                html.H2(str(Label("Dispatch queue", "派遣队列"))), html.Div(id="dispatch-queue")]),
            html.Div(className="dispatch-centre", children=[
                dl.Map(id="dispatch-map", className="dispatch-map", preferCanvas=True, bounds=q.bounds(scope),
                       trackViewport=False, zoomControl=True, attributionControl=False, children=layers),
                html.Section(className="wall-panel", children=[html.H2(str(Label("Open alarms", "告警"))),
                                                               html.Div(id="dispatch-alarms")]),
            ]),
            html.Div(className="dispatch-right", children=[
                html.Section(className="wall-panel dispatch-cand-panel", children=[
                    html.H2(str(Label("Candidates", "候选人员"))), html.Div(id="dispatch-candidates", children=[
                        html.Div(str(Label("Choose a case in the queue (↑↓).", "请在队列中选择案件。")),
                                 className="empty")])]),
                html.Section(className="wall-panel dispatch-tasks-panel", children=[
                    html.H2(str(Label("Tasks in progress", "进行中任务"))), html.Div(id="dispatch-tasks"),
                    html.Div(id="dispatch-acks")]),
                html.Section(className="wall-panel", children=[html.H2(str(Label("Members", "人员状态"))),
                                                               html.Div(id="dispatch-members")]),
            ]),
        ]),
    ])


PAGE = page("/dispatch", Label("Dispatch", "调度"), frozenset({UserRole.DISPATCHER, UserRole.ADMIN}), layout, feed=FEED,
            order=20)


@callback(Output("dispatch-result", "children"),
          Input({"type": "dispatch-ack", "alarm": ALL, "sensor": ALL}, "n_clicks"), prevent_initial_call=True,
          roles=ACKNOWLEDGE_ALARM.roles, why="the Acknowledge buttons", changes=(ACKNOWLEDGE_ALARM,))
def acknowledge(clicks):
    """A dispatcher acknowledges an alarm: through the command module, which authorizes and audits."""
    if not ctx.triggered_id or not any(clicks or ()):
        return no_update
    command = AcknowledgeAlarm(ctx.triggered_id["sensor"], ctx.triggered_id["alarm"])
    result = app_state().commands.execute(current_identity(), command, request.remote_addr)
    return (f"✓ {Label('acknowledged', '已确认')}: {result.summary}" if result.ok
            else f"✗ {result.summary}: {result.reason}")


clientside_callback(
    ClientsideFunction(namespace="gcc", function_name="dispatchLive"),
    Output("dispatch-alarms", "children"), Output("dispatch-members", "children"), Output("dispatch-acks", "children"),
    Output("dispatch-queue", "children"), Output("dispatch-tasks", "children"), Output("dispatch-socket", "url"),
    Input("dispatch-socket", "data-snapshot"), Input("dispatch-socket", "data-frame"),
    Input("dispatch-clock", "n_intervals"), Input("dispatch-selected", "data"),
    State("dispatch-socket", "url"),
    prevent_initial_call=True,
    roles=PAGE.roles, why="the console's live lists",
)

clientside_callback(
    ClientsideFunction(namespace="gcc", function_name="dispatchChoose"),
    Output("dispatch-selected", "data"),
    Input({"type": "dispatch-case", "case": ALL}, "n_clicks"),
    Input({"type": "dispatch-task", "case": ALL}, "n_clicks"),
    prevent_initial_call=True,
    roles=PAGE.roles, why="the case chosen",
)


# --- the case chosen: its candidates, and offering it -------------------------------------------------

def _case_in_scope(case_id: str | None):
    state, identity = app_state(), current_identity()
    case = state.commands.case(case_id) if case_id else None
    if case is None:
        return state, None, None
    return state, case, authorize(state.city, identity, PAGE, case.org_code)


@callback(Output("dispatch-candidates", "children"), Output("dispatch-cand-layer", "data"),
          Output("dispatch-map", "viewport"),
          Input("dispatch-selected", "data"), Input("dispatch-result", "children"),
          Input("dispatch-cand-tick", "n_intervals"),
          roles=PAGE.roles, why="the candidates for the case chosen (authorizes the case's org unit)")
def candidates(case_id, _done, _tick):
    """The candidates for the case chosen (authorized for the case's org unit), only ever members
    inside the viewer's own scope (a street's dispatcher is never sent the next street's)."""
    state, case, decision = _case_in_scope(case_id)
    if case is None:
        hint = html.Div(str(Label("Choose a case in the queue (↑↓).", "请在队列中选择案件。")), className="empty")
        return hint, EMPTY, no_update
    if not decision:
        return html.P(decision.reason, className="refusal"), EMPTY, no_update
    head = html.Div(className="dispatch-cand-case", id="dispatch-cand-case", children=[
        html.Strong(f"{CASE_CATEGORY_LABELS.get(case.category, case.category)}"), " · ", case.place or case.title,
        " · ", dcc.Link(case.case_id, href=f"/case/{case.case_id}")])
    found = scene_panel.case_scene(state, case, current_identity())     # who needs help first there
    top = [head, scene_panel.panel(found, "dispatch", compact=True) if found is not None else None,
           photos.photo_strip(state.queries.case_photos(case.case_id), "dispatch-cand"),   # before / after
           _checks(state, case)]
    features = []
    if case.lat is not None:
        features.append(_point(case.lon, case.lat, {"kind": "case", "label": case.title}))
    if case.state is CaseState.REPORTED:
        body = [html.Button(str(Label("Register", "立案")), id={"type": "dispatch-register", "case": case.case_id},
                            className="button dispatch-register", n_clicks=0)]
        return [*top, html.P(str(Label("Reported: register it first (or refuse it on its page).",
                                       "待立案：请先立案。")), className="audit-dim"), *body], \
            {"type": "FeatureCollection", "features": features}, _view(case)
    if case.state is not CaseState.REGISTERED:
        who = state.city.member_by_terminal.get(case.handler or "")
        name = who.name if who else case.handler
        text = (f"Offered to {name}: waiting for the acceptance" if case.state is CaseState.DISPATCHED
                else f"{name}: {TASK_WORDS.get(case.state, case.state.value)}")
        where = _handler_at(state, case, features) if case.handler else None
        withdraw = [html.Button(str(Label("Withdraw the offer", "撤回派遣")), className="button dispatch-withdraw",
                                id={"type": "dispatch-withdraw", "case": case.case_id}, n_clicks=0)] \
            if case.state is CaseState.DISPATCHED else []
        others = []
        if case.state in REASSIGNABLE and case.lat is not None:     # someone else instead, in one step
            search, today = _search(state, case, frozenset({case.handler}), current_identity().scope_code)
            others = [html.H3(str(Label("Reassign to", "改派给")), className="dispatch-alt-head"),
                      *_rows(search.candidates[:REASSIGN_SHOWN], "dispatch-reassign", "dispatch-alt",
                             Label("Reassign", "改派"), features)]
        view = _view(case) if ctx.triggered_id != "dispatch-cand-tick" else no_update   # a refresh keeps the map
        return [*top, html.P(text, className="audit-dim", id="dispatch-cand-state"),
                html.P(where, className="dispatch-handler-at", id="dispatch-handler-at") if where else None,
                *withdraw, *others], {"type": "FeatureCollection", "features": features}, view
    if case.lat is None:
        return [*top, html.P("The case has no place: dispatch it from its page.", className="audit-dim")], EMPTY, \
            no_update
    automatic = case.category in state.queries.automatic and not case.unassigned
    mode = html.P(str(Label("Automatic mode: the cases engine offers it to candidate 1 itself.",
                            "自动派遣：系统自动派给第一候选人。")), className="dispatch-mode",
                  id="dispatch-cand-mode") if automatic else None
    search, today = _search(state, case, frozenset(), current_identity().scope_code)
    rows = _rows(search.candidates[:CANDIDATES_SHOWN], "dispatch-offer", "dispatch-cand", Label("Offer", "派遣"),
                 features)
    left = ", ".join(f"{n} {why}" for why, n in sorted(search.left_out.items()))
    foot = html.Div(f"looked at {search.looked_at} terminals within {state.settings.dispatch_radius_m:.0f} m"
                    + (f"; left out: {left}" if left else "")
                    + ("" if today.loaded else "; no duty roster today: everyone counts as on duty")
                    + ". ETA: straight line × "
                    f"{state.settings.dispatch_detour:g} at {state.settings.dispatch_walk_mps:g} m/s.",
                    className="audit-dim", id="dispatch-cand-foot")
    none = [html.Div("Nobody available near it.", className="empty")] if not rows else []
    view = _view(case) if ctx.triggered_id != "dispatch-cand-tick" else no_update   # a refresh keeps the map
    return [*top, mode, *rows, *none, foot], {"type": "FeatureCollection", "features": features}, view


def check_candidates(state, case) -> list:
    """Who could check a case on site: dispatch.candidates' search among the members of the case's
    own grid, the member in SOS and those asked who have not answered left out."""
    if case.lat is None or not case.grid_code:
        return []
    search, _ = _search(state, case, not_to_ask(case), case.grid_code)
    return search.candidates


def _checks(state, case):
    """A case raised by an alarm or an SOS: the checks asked and answered, and (open) buttons to ask
    the default member (the nearest available of its grid) or the next nearest to check it."""
    if case.source not in CHECKABLE:
        return None
    answers = check_list(state.city, state.queries.case_history(case.case_id)["events"], "dispatch-cand", local)
    buttons = []
    if case.is_open:
        candidates = check_candidates(state, case)
        first = default_checker(case, candidates)
        others = [c for c in candidates if c.available and c.grid_code == case.grid_code and c is not first]
        for n, c in enumerate(([first] if first else []) + sorted(others, key=lambda c: c.distance_m), 1):
            if n > CHECKERS_SHOWN:
                break
            buttons.append(html.Button(f"{Label('Ask to check', '请其核实')}: {c.name} · {c.distance_m:.0f} m",
                                       id={"type": "dispatch-check", "terminal": c.terminal_id, "rank": n},
                                       className="button small dispatch-check-button", n_clicks=0))
        if not buttons:
            buttons.append(html.P(str(Label("Nobody of its grid available to check it.", "本网格暂无可核实人员。")),
                                  className="audit-dim"))
    return html.Div(className="dispatch-checks", id="dispatch-checks", children=[
        html.H3(str(Label("Check on site", "紧急核实")), className="dispatch-alt-head"), answers, *buttons])


def _search(state, case, exclude: frozenset[str], scope_code: str):
    """The ranked candidates for the case (dispatch.candidates) among the members inside the
    viewer's `scope_code`, with today's duty roster."""
    work = state.queries.open_work()
    now = time.time()
    at = datetime.fromtimestamp(now, timezone.utc)
    today = state.queries.roster_today(at)
    search = find(state.queries.r, state.city, case.category, case.grid_code, case.lat, case.lon,
                  lambda t: work.get(t, []), now, SearchSettings.from_settings(state.settings),
                  exclude=exclude, on_duty=lambda t: today.on_duty(t, at), scope_code=scope_code)
    return search, today


def _rows(shown, button_type: str, row_id: str, verb: Label, features: list) -> list:
    """A row per candidate (name, role, status, distance, ETA, why) with its button, and their
    numbered markers added to `features`."""
    rows = []
    for n, c in enumerate(shown, 1):
        rows.append(html.Div(className="dispatch-cand" + ("" if c.available else " busy"), id=f"{row_id}-{n}",
                             children=[
            html.Span(str(n), className="dispatch-cand-n"),
            html.Div(className="dispatch-cand-who", children=[
                html.Div([html.Strong(c.name), f" · {ROLE_LABELS[c.role]}"]),
                html.Div(f"{STATUS_LABELS[c.status.status]} · {c.distance_m:.0f} m · ~{math.ceil(c.eta_s / 60)} min "
                         "on foot", className="dispatch-cand-facts"),
                html.Div(c.reason, className="audit-dim dispatch-cand-why")]),
            html.Button(str(verb), className=f"button {button_type}-button",
                        id={"type": button_type, "terminal": c.terminal_id, "rank": n}, n_clicks=0,
                        disabled=not c.available),
        ]))
        features.append(_point(c.lon, c.lat, {"kind": c.status.status.value, "n": n,
                                              "label": f"{n} · {c.name} · {c.distance_m:.0f} m"}))
    return rows


def _handler_at(state, case, features: list) -> str | None:
    """Where the case's handler is now (their marker added to `features`), in words: how far from
    the case, as of which fix."""
    now = time.time()
    live_now = live_of(state.queries.r, case.handler, now)
    if live_now is None or not live_now.t:
        return "no position from their terminal yet"
    member = state.city.member_by_terminal.get(case.handler)
    features.append(_point(live_now.lon, live_now.lat, {"kind": "handler", "n": "▶",
                                                        "label": member.name if member else case.handler}))
    age = f"fix {max(0, now - live_now.t):.0f} s ago"
    if case.lat is None:
        return age
    return f"{distance_m(live_now.lon, live_now.lat, case.lon, case.lat):.0f} m from the place · {age}"


def _point(lon, lat, props):
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]}, "properties": props}


def _view(case):
    if case.lat is None:
        return no_update
    return {"center": [case.lat, case.lon], "zoom": 16, "transition": "flyTo"}


@callback(Output("dispatch-result", "children", allow_duplicate=True),
          Input({"type": "dispatch-offer", "terminal": ALL, "rank": ALL}, "n_clicks"),
          Input({"type": "dispatch-register", "case": ALL}, "n_clicks"),
          Input({"type": "dispatch-withdraw", "case": ALL}, "n_clicks"),
          Input({"type": "dispatch-reassign", "terminal": ALL, "rank": ALL}, "n_clicks"),
          State("dispatch-selected", "data"), prevent_initial_call=True,
          roles=PAGE.roles, why="offering a case, registering it, withdrawing an offer, reassigning it",
          changes=(CASE_ACTIONS[Dispatch], CASE_ACTIONS[Register], CASE_ACTIONS[Return], REASSIGN))
def offer(clicks, register_clicks, withdraw_clicks, reassign_clicks, case_id):
    """Offer the case to the candidate chosen (or register it): through the command module."""
    trigger = ctx.triggered_id
    if trigger is None or not case_id:
        return no_update
    state = app_state()
    if trigger["type"] == "dispatch-register":
        if not any(register_clicks or ()):
            return no_update
        command = Register()
    elif trigger["type"] == "dispatch-withdraw":
        if not any(withdraw_clicks or ()):
            return no_update
        command = Return("offer withdrawn by the dispatcher (to offer it to someone else)")
    else:
        if not any((clicks if trigger["type"] == "dispatch-offer" else reassign_clicks) or ()):
            return no_update
        member = state.city.member_by_terminal.get(trigger["terminal"])
        if member is None:
            return "✗ not a member"
        if trigger["type"] == "dispatch-reassign":
            command = Dispatch(member.terminal_id, member.grid_code, rank=trigger["rank"],
                               why=f"reassigned from the console, candidate #{trigger['rank']}")
            result = state.commands.execute(current_identity(), Reassign(
                case_id, command, state.case_rules, reason=f"reassigned by the dispatcher to {member.name}"),
                request.remote_addr)
            return f"✓ {result.summary}: reassigned to {member.name}" if result.ok else \
                f"✗ {result.summary}: {result.reason}"
        command = Dispatch(member.terminal_id, member.grid_code, rank=trigger["rank"],
                           why=f"offered by hand from the console, candidate #{trigger['rank']}")
    result = state.commands.execute(current_identity(), CaseAction(case_id, command, state.case_rules),
                                    request.remote_addr)
    verb = {Register: "registered", Return: "offer withdrawn"}.get(type(command), "offered")
    return f"✓ {result.summary}: {verb}" if result.ok else f"✗ {result.summary}: {result.reason}"

@callback(Output("dispatch-result", "children", allow_duplicate=True),
          Input({"type": "dispatch-check", "terminal": ALL, "rank": ALL}, "n_clicks"),
          State("dispatch-selected", "data"), prevent_initial_call=True,
          roles=PAGE.roles, why="asking a member to check a case on site (紧急核实)", changes=(REQUEST_CHECK,))
def ask_to_check(clicks, case_id):
    """Ask the member of the button to check the chosen case: through the command module."""
    trigger = ctx.triggered_id
    if trigger is None or not case_id or not any(clicks or ()):
        return no_update
    state = app_state()
    command = RequestCheck(trigger["terminal"])
    result = state.commands.execute(current_identity(), RequestCaseCheck(case_id, command, state.case_rules),
                                    request.remote_addr)
    member = state.city.member_by_terminal.get(trigger["terminal"])
    who = member.name if member else trigger["terminal"]
    return f"✓ {result.summary}: {who} asked to check it" if result.ok else f"✗ {result.summary}: {result.reason}"


live_ui.show_connection("dispatch", PAGE.roles)

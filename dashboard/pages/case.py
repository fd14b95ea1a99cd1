"""One case (`/case/<case number>`): what it is and where (a small map), its clock (the stage, the
deadline as first computed and as extended, time left), the timeline of every event with who,
when and why, the escalation steps, the reports and alarms it was made of with their photos, the
notices its terminals were sent, the checks on site asked and answered (紧急核实: outcome, note,
photos), who in the case's building needs help first (dashboard.scene_panel, ledger.scene: names
only for those allowed to see them, else the count), and the actions the person looking at it may
take now.

The actions offered are the machine's answer for this person and this case (cases.machine.allowed:
its state, the login's role and org unit); dashboard/commands.py authorizes each again for the
case's org unit, the machine decides again on the locked row, and the audit trail keeps it. The
page itself is authorized for the case's org unit: a street's dispatcher cannot open another
street's case by its number.

Live: the page's feed (`case`) is opened for the case's own org unit (the hub authorizes it as it
authorizes the page; the org unit of a case never changes) and carries the numbers of the cases
there that change; when this case is one of them, the page draws its state, clock, timeline and
actions again (assets/cases.js bumps `case-pushed`). The clock's time left ticks in the browser;
a slow fallback (FALLBACK_MS) redraws what moves with no event (the stages' running times).
"""
from __future__ import annotations

from datetime import datetime, timezone

import dash_leaflet as dl
from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from flask import request

from cases.limits import Limit
from cases.model import (
    FINISHED,
    Acknowledge,
    Case,
    Close,
    DecideExtension,
    Dispatch,
    Evaluate,
    Refuse,
    Register,
    Reopen,
    RequestCheck,
    RequestExtension,
    Resume,
    Return,
    Suspend,
    Verify,
)
from cases.reads import case_photos
from core.catalogue import (
    ACTION_LABELS,
    CASE_CATEGORY_LABELS,
    CASE_SOURCE_LABELS,
    CASE_STAGE_LABELS,
    CASE_STATE_LABELS,
    ORG_LEVEL_LABELS,
    AuditAction,
    CaseState,
    Label,
)
from core.orgcodes import Level, ancestor, contains
from core.roles import ROLE_LABELS, UserRole
from dashboard import live_ui, photos, scene_panel
from dashboard.authz import Decision, Scope, authorize, current_identity
from dashboard.case_actions import CASE_ACTIONS, CaseAction, offered
from dashboard.case_checks import (
    CHECK_OUTCOME_LABELS,
    CHECKABLE,
    RequestCaseCheck,
    check_list,
    check_options,
    thumbnails,
)
from dashboard.declarations import callback, export, page
from dashboard.feeds import Feed
from dashboard.pages.cases import (
    clock_data,
    duration,
    handler_name,
    local,
    time_class,
    time_left,
    urgency_badge,
    wire_case_seen,
)
from dashboard.pages.dispatch import check_candidates
from dashboard.state import app_state

FALLBACK_MS = 60_000     # changes come pushed; this redraws what moves with no event (see the docstring)
PATH = "/case"
ROLES = frozenset({UserRole.DISPATCHER, UserRole.LEADER, UserRole.ADMIN})
# the buttons: (key, label, the command it gives, what it needs from the form)
BUTTONS = [
    ("acknowledge", Label("Acknowledge", "确认知悉"), Acknowledge, ()),
    ("register", Label("Register", "立案"), Register, ()),
    ("dispatch", Label("Dispatch", "派遣"), Dispatch, ("handler",)),
    ("refuse", Label("Refuse", "不予立案"), Refuse, ("reason",)),
    ("verify_pass", Label("Verified: passed", "核查通过"), Verify, ()),
    ("verify_fail", Label("Verified: failed (rework)", "核查不通过（返工）"), Verify, ("reason",)),
    ("close", Label("Close", "结案"), Close, ()),
    ("evaluate", Label("Evaluate", "评价"), Evaluate, ("rating",)),
    ("approve_extension", Label("Approve extension", "批准延期"), DecideExtension, ()),
    ("refuse_extension", Label("Refuse extension", "驳回延期"), DecideExtension, ("reason",)),
    ("request_extension", Label("Ask for an extension", "申请延期"), RequestExtension, ("limit", "reason")),
    ("return", Label("Return to registration", "回退"), Return, ("reason",)),
    ("suspend", Label("Suspend", "缓办"), Suspend, ("reason",)),
    ("resume", Label("Resume", "恢复办理"), Resume, ()),
    ("reopen", Label("Reopen", "重新办理"), Reopen, ("reason",)),
    ("request_check", Label("Ask to check on site", "请求紧急核实"), RequestCheck, ("checker",)),
]
COMMAND_LABELS = {**{key[len("case."):]: label for key, label in ACTION_LABELS.items() if key.startswith("case.")},
                  "open": Label("opened", "上报/立案"), "merge": Label("report merged in", "合并上报"),
                  "escalate": Label("escalated", "升级督办"),
                  "device_cleared": Label("alarm cleared by the device", "设备告警解除"),
                  "raised_again": Label("raised again", "再次告警")}


def layout(state, scope: Scope, kiosk: bool = False):
    return html.Div(className="case-page", id="case", children=[
        dcc.Store(id="case-pushed", data=0),
        html.Div(style={"display": "flex", "alignItems": "center", "gap": "12px"}, children=[
            html.Div(id="case-head", style={"flex": "1", "minWidth": 0}),
            html.Div(id="case-live", className="case-live"),   # the socket, once the case's org unit is known
        ]),
        html.Div(className="case-columns", children=[
            html.Div(className="case-main", children=[
                html.Div(id="case-clock-box"),
                html.Div(id="case-actions", className="case-actions"),   # not refreshed: what is typed stays
                html.Div(id="case-result", className="admin-result", role="status"),
                html.Div(id="case-history"),
            ]),
            html.Div(className="case-side", children=[html.Div(id="case-map-box"), html.Div(id="case-side")]),
        ]),
        dcc.Interval(id="case-fallback", interval=FALLBACK_MS),
        dcc.Store(id="case-done"),
        dcc.Store(id="case-offered"),
    ])


FEED = Feed("case", wire={"case": wire_case_seen}, snapshot=lambda q, scope: {})
PAGE = page(PATH, Label("Case", "案件"), ROLES, layout, feed=FEED, nav=False, subpaths=True, order=90)
# the photos this page shows, for whoever may open a case's page and whose scope covers a report or
# case naming them (dashboard/photos.py)
export(photos.PATH, PAGE.roles, "a member's photo, if the viewer's scope covers a report or case naming it "
       "(else 404)")(photos.serve)


def case_id_of(pathname: str | None) -> str:
    return (pathname or "").removeprefix(PATH + "/").strip("/")[:40]


def _authorized(pathname) -> tuple[Case | None, Decision]:
    """The case of the URL and whether this identity may see it (the case's own org unit)."""
    state, identity = app_state(), current_identity()
    case_id = case_id_of(pathname)
    case = state.commands.case(case_id) if case_id else None
    if case is None:
        return None, Decision(False, f"there is no case {case_id!r}", status=404)
    return case, authorize(state.city, identity, PAGE, case.org_code)


def _refused(decision: Decision, case: Case | None):
    if case is not None:
        app_state().commands.record(current_identity(), AuditAction.PAGE_OPEN, "refused", decision.reason,
                                    f"case:{case.case_id}", request.remote_addr)
    return html.Div(className="placeholder refusal", id="case-refused",
                    children=[html.H1(f"{decision.status}"), html.P(decision.reason)])


@callback(Output("case-head", "children"), Output("case-clock-box", "children"), Output("case-history", "children"),
          Output("case-side", "children"), Input("shell-url", "pathname"), Input("case-pushed", "data"),
          Input("case-fallback", "n_intervals"), Input("case-done", "data"),
          roles=PAGE.roles, why="a case's page, drawn again when it changes (authorizes the case's org unit)")
def show(pathname, _pushed, _fallback, _done):
    """The case, drawn again whenever it changes (pushed), authorized for the case's org unit each time."""
    case, decision = _authorized(pathname)
    if not decision:
        return _refused(decision, case), None, None, None
    state = app_state()
    now = datetime.now(timezone.utc)
    history = state.queries.case_history(case.case_id)
    return (_head(state, case), _clock(case, now),
            [_scene(state, case), _checks(state, case, history["events"]),
             _section(Label("Stages and their deadlines", "各环节时限"), _stages(case, history["events"], now)),
             _section(Label("Timeline", "办理过程"), _timeline(state, history["events"])),
             _section(Label("Escalation steps", "升级督办"), _escalations(state, history["escalations"]))],
            [_facts(state, case), _section(Label("Sources and photos", "来源与照片"), _sources(history)),
             _section(Label("Sent to terminals", "推送终端"), _notices(state, history["notices"]))])


@callback(Output("case-map-box", "children"), Output("case-live", "children"), Input("shell-url", "pathname"),
          roles=PAGE.roles, why="a case's small map and its live feed's socket (authorizes the case's org unit)")
def show_map(pathname):
    """What stays while the page is open: the small map, and the live feed of the case's org unit."""
    case, decision = _authorized(pathname)
    if not decision:
        return None, None
    return _map(app_state(), case), [live_ui.socket("case", FEED, case.org_code),
                                     live_ui.badge("case")]


@callback(Output("case-actions", "children"), Output("case-offered", "data"), Input("shell-url", "pathname"),
          Input("case-pushed", "data"), Input("case-fallback", "n_intervals"), Input("case-done", "data"),
          State("case-offered", "data"),
          roles=PAGE.roles, why="the actions offered (authorizes the case's org unit)")
def show_actions(pathname, _pushed, _fallback, done, shown):
    """The actions this person may take now: drawn again only when they change (or after one was
    done), so what is being typed is not wiped by the refresh."""
    case, decision = _authorized(pathname)
    if not decision:
        return None, None
    keys = [key for key, _, _ in _buttons(case, current_identity())]
    if keys == shown and ctx.triggered_id != "case-done":
        return no_update, no_update
    if ctx.triggered_id == "case-done" and done and not done.get("ok") and keys == shown:
        return no_update, no_update      # refused: keep the form as it was, to correct it
    return _actions(app_state(), case), keys


live_ui.follow_frames("case", "caseLive", Output("case-pushed", "data"), PAGE.roles)


def _section(title: Label, body):
    return html.Section(className="case-section", children=[html.H2(str(title)), body])


def _scene(state, case: Case):
    """Who needs help first at the case's building (ledger.scene decides what this viewer sees:
    names for the case's handlers of the building's scope, else the count); none when the case is
    at no building."""
    found = scene_panel.case_scene(state, case, current_identity())
    return scene_panel.panel(found, "case") if found is not None else None


def _head(state, case: Case):
    return html.Div(className="dispatch-head case-head", children=[
        html.H1([html.Span(case.case_id, id="case-number"), " · ",
                 str(CASE_CATEGORY_LABELS.get(case.category, case.category))]),
        urgency_badge(case),
        html.Span(str(CASE_STATE_LABELS[case.state.value]), id="case-state",
                  className=f"case-state case-state-{case.state.value}"),
        html.Span(case.title if case.title != str(CASE_CATEGORY_LABELS.get(case.category)) else case.place,
                  className="case-title"),
        dcc.Link(str(Label("← all cases", "← 案件列表")), href="/cases", className="button small"),
    ])


def _clock(case: Case, now: datetime):
    if case.stage is None:
        text = (str(Label("Suspended: no clock runs", "缓办：不计时")) if case.suspended_from is not None
                else str(Label("Finished", "已办结")) + (f" · {local(case.closed_at)}" if case.closed_at else ""))
        return html.Div(text, className="case-clock case-idle", id="case-clock")
    extended = case.deadline != case.deadline_original
    parts = [
        html.Div(className="case-clock-stage", children=[str(CASE_STAGE_LABELS[case.stage.value])]),
        html.Div(time_left(case, now), className="case-clock-left", id="case-left", **clock_data(case)),
        html.Div(className="case-clock-detail", children=[
            f"{Label('deadline', '时限')} {local(case.deadline)}",
            f" · {Label('first', '原时限')} {local(case.deadline_original)}" if extended else "",
            f" · {Label('amber at', '预警')} {local(case.warn_at)}",
            f" · {Label('escalated to', '已升级至')} {ORG_LEVEL_LABELS[case.escalation_level]}"
            if case.escalation_level else "",
        ]),
    ]
    if case.pending_extension is not None:
        ext = case.pending_extension
        parts.append(html.Div(f"{Label('Extension asked', '延期申请')}: {ext.limit} · {ext.reason} · {ext.asked_by} "
                              f"{local(ext.asked_at)}", className="case-pending", id="case-pending"))
    scale = app_state().queries.case_time_scale
    if scale != 1.0:
        parts.append(html.Div(f"demo: limits run ×{1 / scale:g} fast", className="audit-dim"))
    return html.Div(parts, className=f"case-clock {time_class(case, now)}", id="case-clock")


def _facts(state, case: Case):
    member = state.city.member_by_terminal.get(case.handler or "")
    rows = [
        (Label("Source", "来源"), str(CASE_SOURCE_LABELS[case.source.value])),
        (Label("Place", "地点"), case.place or "–"),
        (Label("Org unit", "责任单位"), state.city.org_name(case.org_code)),
        (Label("Handler", "处置人"),
         f"{member.name} · {ROLE_LABELS[member.role]}" if member else handler_name(state, case)),
        (Label("Opened", "立案时间"), local(case.opened_at)),
        (Label("Acknowledged by", "确认人"), case.acknowledged_by or "–"),
        (Label("Rework · return · extended · reopened", "返工 · 回退 · 延期 · 重办"),
         f"{case.rework_count} · {case.return_count} · {case.extension_count} · {case.reopen_count}"),
        (Label("Rating", "评价"), f"{case.rating} / 5" if case.rating else "–"),
        (Label("Time limits", "时限版本"), f"version {case.limits_version}"),
    ]
    return html.Dl(className="case-facts", id="case-facts",
                   children=[x for label, value in rows for x in (html.Dt(str(label)), html.Dd(value))])


def _map(state, case: Case):
    grid = state.city.grid_by_code.get(case.grid_code or "")
    layers = [dl.GeoJSON(data=state.queries.grids_geojson(Scope(grid.code, grid.name)))] if grid else []
    if case.lat is not None and case.lon is not None:
        layers.append(dl.CircleMarker(center=[case.lat, case.lon], radius=9, color="#ff453a", fillOpacity=0.8))
    if state.tile_url:
        layers.insert(0, dl.TileLayer(url=state.tile_url))
    if grid is not None:
        minx, miny, maxx, maxy = grid.boundary.bounds
        bounds = [[miny, minx], [maxy, maxx]]
    elif case.lat is not None:
        bounds = [[case.lat - 0.002, case.lon - 0.002], [case.lat + 0.002, case.lon + 0.002]]
    else:
        return html.Div(str(Label("No place on the map", "无位置")), className="case-map placeholder")
    return dl.Map(layers, bounds=bounds, className="case-map", id="case-map", zoomControl=False, trackViewport=False,
                  attributionControl=False, preferCanvas=True)


# --- actions -----------------------------------------------------------------------------------------

def _buttons(case: Case, identity) -> list[tuple[str, Label, tuple[str, ...]]]:
    """The machine's offer, less what makes no sense to show: deciding an extension nobody asked
    for, acknowledging what is not an SOS or an alarm (those wait for a person to see them) or was
    acknowledged already."""
    possible = set(offered(case, identity))
    if case.source.value not in ("sos", "alarm") or case.acknowledged_by is not None:
        possible.discard(Acknowledge)
    if case.source not in CHECKABLE:
        possible.discard(RequestCheck)
    return [(key, label, needs) for key, label, command, needs in BUTTONS if command in possible
            and (command is not DecideExtension or case.pending_extension is not None)]


def _actions(state, case: Case):
    identity = current_identity()
    buttons = _buttons(case, identity)
    if not buttons:
        return html.Div(str(Label("Nothing for you to do on this case now.", "当前无可执行的操作。")),
                        className="audit-dim", id="case-no-actions")
    needs = {n for _, _, ns in buttons for n in ns}
    fields = []
    if "handler" in needs:
        fields.append(dcc.Dropdown(id="case-handler", options=_handlers(state, case, identity),
                                   placeholder=str(Label("a member to dispatch to", "派遣给")),
                                   className="case-handler"))
    if "checker" in needs:
        options, first = check_options(state.city, case, check_candidates(state, case), identity.scope_code or "")
        fields.append(dcc.Dropdown(id="case-checker", options=options, value=first,
                                   placeholder=str(Label("a member to check it on site", "核实人员")),
                                   className="case-handler"))
    if "rating" in needs:
        fields.append(dcc.Dropdown(id="case-rating",
                                   options=[{"label": f"{n} / 5", "value": n} for n in range(5, 0, -1)],
                                   value=5, clearable=False, className="case-rating"))
    if "limit" in needs:
        fields.append(dcc.Input(id="case-limit", placeholder="2h · 1wd · 30m", className="case-limit"))
    fields.append(dcc.Textarea(id="case-reason", maxLength=500, className="case-reason",
                               placeholder=str(Label("reason or note (needed to refuse, return, fail, suspend, reopen)",
                                                     "原因/说明"))))
    present = {f.id for f in fields}
    hidden = [dcc.Input(id=i, type="hidden") for i in ("case-handler", "case-checker", "case-rating", "case-limit")
              if i not in present]
    return [html.Div(fields + hidden, className="case-action-fields"),
            html.Div([html.Button(str(label), id={"type": "case-do", "key": key}, className=f"button case-do-{key}",
                                  n_clicks=0) for key, label, _ in buttons], className="case-action-buttons")]


def _handlers(state, case: Case, identity) -> list[dict]:
    """Members to dispatch to: the case's grid first, then the rest of its community, within the
    dispatcher's scope. (The dispatch console ranks the nearest available: the dispatch issue.)"""
    grid = case.grid_code or ""
    community = ancestor(grid, Level.COMMUNITY) if grid else case.org_code
    members = [m for m in state.city.members
               if (m.grid_code == grid or contains(community, m.grid_code))
               and (not identity.scope_code or contains(identity.scope_code, m.grid_code))]
    members.sort(key=lambda m: (m.grid_code != grid, m.grid_code, m.role.value, m.name))
    return [{"label": f"{m.name} · {ROLE_LABELS[m.role]} · {state.city.org_name(m.grid_code)}", "value": m.terminal_id}
            for m in members[:200]]


@callback(Output("case-result", "children"), Output("case-done", "data"),
          Input({"type": "case-do", "key": ALL}, "n_clicks"),
          State("shell-url", "pathname"), State("case-reason", "value"), State("case-handler", "value"),
          State("case-rating", "value"), State("case-limit", "value"), State("case-checker", "value"),
          prevent_initial_call=True,
          roles=PAGE.roles, why="a case action (each authorized for the case's org unit)",
          changes=tuple(CASE_ACTIONS.values()))
def act(clicks, pathname, reason, handler, rating, limit, checker):
    """One button: the command, through dashboard/commands.py (authorized, decided, audited)."""
    if not ctx.triggered_id or not any(clicks):
        return no_update, no_update
    key = ctx.triggered_id["key"]
    state = app_state()
    case_id = case_id_of(pathname)
    try:
        command = _command(state, key, (reason or "").strip(), handler if key != "request_check" else checker,
                           rating, limit)
    except ValueError as bad:
        return html.Span(f"Not done: {bad}", className="admin-refused"), {"ok": False}
    kind = RequestCaseCheck if isinstance(command, RequestCheck) else CaseAction   # a check: what to check filled in
    result = state.commands.execute(current_identity(), kind(case_id, command, state.case_rules), request.remote_addr)
    label = next(str(lb) for k, lb, _, _ in BUTTONS if k == key)
    text = f"{label}: done" if result.ok else f"{label}: refused — {result.reason}"
    return (html.Span(text, className="admin-done" if result.ok else "admin-refused"),
            {"ok": result.ok, "at": datetime.now(timezone.utc).isoformat()})


def _command(state, key: str, reason: str, handler, rating, limit):
    """The command of a button (`handler`: the member chosen, to dispatch to or to ask to check)."""
    if key == "request_check":
        if state.city.member_by_terminal.get(handler or "") is None:
            raise ValueError("choose the member to ask to check it")
        return RequestCheck(handler, reason=reason)
    if key == "dispatch":
        member = state.city.member_by_terminal.get(handler or "")
        if member is None:
            raise ValueError("choose the member to dispatch to")
        return Dispatch(member.terminal_id, member.grid_code)
    if key == "evaluate":
        return Evaluate(int(rating or 5), reason)
    if key == "request_extension":
        return RequestExtension(Limit.parse((limit or "").strip()), reason)
    simple = {"acknowledge": Acknowledge(), "register": Register(), "close": Close(), "resume": Resume(),
              "verify_pass": Verify(True, reason), "approve_extension": DecideExtension(True, reason)}
    if key in simple:
        return simple[key]
    needs_reason = {"refuse": Refuse, "return": Return, "suspend": Suspend, "reopen": Reopen}
    if key in needs_reason:
        return needs_reason[key](reason)
    if key == "verify_fail":
        return Verify(False, reason)
    if key == "refuse_extension":
        return DecideExtension(False, reason)
    raise ValueError(f"{key!r} is not an action")


# --- history -----------------------------------------------------------------------------------------

def _who(state, event: dict) -> str:
    if event["actor_kind"] == "terminal":
        member = state.city.member_by_terminal.get(event["actor"])
        return f"{member.name} · {ROLE_LABELS[member.role]} ({event['actor']})" if member else event["actor"]
    if event["actor_kind"] == "system":
        return f"{event['actor']} (system)"
    return f"{event['actor']} · {', '.join(event['roles'])}"


_QUIET = frozenset({"source", "urgency", "category", "stage_seq", "step", "repeat", "level", "org_code"})


def _detail(state, command: str, detail: dict) -> str:
    """An event's detail as a person reads it: names for codes, local times, no internals."""
    detail = detail or {}
    shown = []
    if command == "escalate":
        where = state.city.org_name(detail["org_code"]) if detail.get("org_code") else state.city.name
        level = ORG_LEVEL_LABELS.get(detail.get("level"), detail.get("level"))
        shown.append(f"→ {level} · {where}" + (f" (repeat {detail['repeat']})" if detail.get("repeat") else ""))
    if command == "check":          # the outcome in words; its photos are drawn beside it
        detail = {k: v for k, v in detail.items() if k != "photo_refs"}
        outcome = detail.pop("outcome", None)
        shown.append(str(CHECK_OUTCOME_LABELS.get(outcome, outcome)))
    for key, value in detail.items():
        if value in (None, "", []) or key in _QUIET:
            continue
        if key in ("handler", "terminal_id", "sos_terminal_id"):
            member = state.city.member_by_terminal.get(value)
            value = member.name if member else value
        elif isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
            value = local(datetime.fromisoformat(value))
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        shown.append(f"{key.replace('_', ' ')}: {value}")
    return " · ".join(shown)


def _checks(state, case: Case, events: list[dict]):
    """The checks on site asked and answered (a case raised by an alarm or an SOS; None otherwise)."""
    if case.source not in CHECKABLE:
        return None
    listed = check_list(state.city, events, "case", local)
    return _section(Label("Checks on site", "紧急核实"), listed if listed is not None else html.P(
        str(Label("Nobody asked to check it yet.", "尚未请求核实。")), className="audit-dim", id="case-no-checks"))


def _timeline(state, events: list[dict]):
    if not events:
        return html.P("–", className="audit-dim")
    head = html.Thead(html.Tr([html.Th(str(h)) for h in (Label("When", "时间"), Label("Who", "操作人"),
                                                         Label("What", "操作"), Label("State", "状态"),
                                                         Label("Why · detail", "原因 · 详情"))]))
    rows = [html.Tr(className=f"case-event case-event-{e['command']}", children=[
        html.Td(local(e["time"]), className="audit-time"),
        html.Td(_who(state, e)),
        html.Td(str(COMMAND_LABELS.get(e["command"], e["command"]))),
        html.Td(_states(e)),
        html.Td([html.Div(e["reason"]) if e["reason"] else None,
                 html.Div(_detail(state, e["command"], e["detail"]), className="audit-dim"),
                 html.Div(thumbnails((e["detail"] or {}).get("photo_refs") or []), className="photo-thumbs")
                 if e["command"] == "check" and (e["detail"] or {}).get("photo_refs") else None]),
    ]) for e in events]
    return html.Table(className="data-table", id="case-timeline", children=[head, html.Tbody(rows)])


def stage_rows(events: list[dict], now: datetime) -> list[dict]:
    """Each stage clock the case ran: when it started, its deadline (as first computed and as
    extended), when it ended (the next stage's start, or the case's end) and whether in time."""
    rows: list[dict] = []
    for e in events:
        detail = e["detail"] or {}
        if rows and rows[-1]["ended"] is None and (detail.get("stage") or e["to_state"] in _ENDS):
            rows[-1]["ended"] = e["time"]
        if e["command"] == "decide_extension" and detail.get("approved") and rows:
            rows[-1]["deadline"] = datetime.fromisoformat(detail["deadline"])
        if detail.get("stage") and detail.get("deadline"):
            deadline = datetime.fromisoformat(detail["deadline"])
            rows.append({"stage": detail["stage"], "started": e["time"], "first": deadline, "deadline": deadline,
                         "ended": None})
    for row in rows:
        end = row["ended"] or now
        row["late_s"] = (end - row["deadline"]).total_seconds()
    return rows


_ENDS = FINISHED | {CaseState.SUSPENDED}


def _stages(case: Case, events: list[dict], now: datetime):
    rows = stage_rows(events, now)
    if not rows:
        return html.P("–", className="audit-dim")
    head = html.Thead(html.Tr([html.Th(str(h)) for h in (Label("Stage", "环节"), Label("Started", "开始"),
                                                         Label("Deadline", "时限"), Label("Ended", "完成"),
                                                         Label("In time?", "是否按期"))]))
    body = []
    for r in rows:
        extended = r["deadline"] != r["first"]
        if r["ended"] is None:
            verdict = (f"{Label('running', '进行中')} · {duration(-r['late_s'])} {Label('left', '剩余')}"
                       if r["late_s"] < 0 else f"{Label('overdue', '超时')} {duration(r['late_s'])}")
        else:
            verdict = (str(Label("in time", "按期")) if r["late_s"] <= 0
                       else f"{Label('late by', '超时')} {duration(r['late_s'])}")
        late = r["late_s"] > 0
        body.append(html.Tr(className="case-stage-late" if late else "", children=[
            html.Td(str(CASE_STAGE_LABELS.get(r["stage"], r["stage"]))),
            html.Td(local(r["started"]), className="audit-time"),
            html.Td([local(r["deadline"]), html.Div(f"{Label('first', '原')} {local(r['first'])}",
                                                    className="audit-dim") if extended else None],
                    className="audit-time"),
            html.Td(local(r["ended"]), className="audit-time"),
            html.Td(verdict, className="case-stage-verdict"),
        ]))
    return html.Table(className="data-table", id="case-stages", children=[head, html.Tbody(body)])


def _states(event: dict) -> str:
    to = str(CASE_STATE_LABELS[event["to_state"]])
    if event["from_state"] and event["from_state"] != event["to_state"]:
        return f"{CASE_STATE_LABELS[event['from_state']]} → {to}"
    return to


def _escalations(state, steps: list[dict]):
    if not steps:
        return html.P(str(Label("Not escalated.", "未升级。")), className="audit-dim")
    head = html.Thead(html.Tr([html.Th(str(h)) for h in (Label("Fired", "时间"), Label("Stage", "环节"),
                                                         Label("Level", "层级"), Label("Org unit", "单位"),
                                                         Label("Late by", "延迟"))]))
    rows = [html.Tr([html.Td(local(s["fired_at"]), className="audit-time"),
                     html.Td(str(CASE_STAGE_LABELS.get(s["stage"], s["stage"]))),
                     html.Td(str(ORG_LEVEL_LABELS[s["level"]]) + (f" (repeat {s['repeat']})" if s["repeat"] else "")),
                     html.Td(state.city.org_name(s["org_code"]) if s["org_code"] else state.city.name),
                     html.Td(duration((s["fired_at"] - s["due_at"]).total_seconds()))]) for s in steps]
    return html.Table(className="data-table", id="case-escalations", children=[head, html.Tbody(rows)])


def _sources(history: dict):
    """The reports and alarms the case was made of, and its photos: those the server holds as
    thumbnails (before / after: dashboard.photos), any other ref (an older terminal's path) as text."""
    items = []
    for s in history["sources"]:
        refs = [r for r in ([s["photo_ref"]] if s["photo_ref"] else []) + list(s["photo_refs"] or ())
                if not photos.url(r)]
        items.append(html.Li([html.Span(f"{s['kind']} {s['key']} ({s['linked']})"),
                              html.Div(s["address"], className="case-source-address") if s["address"] else None,
                              html.Div(s["description"], className="audit-dim") if s["description"] else None,
                              *[html.Code(ref, className="case-photo") for ref in refs]]))
    for e in history["events"]:
        for ref in (e["detail"] or {}).get("photo_refs") or ():
            if not photos.url(ref):
                items.append(html.Li([html.Span(f"{COMMAND_LABELS.get(e['command'], e['command'])} · "
                                                f"{local(e['time'])}"), html.Code(ref, className="case-photo")]))
    strip = photos.photo_strip(case_photos(history), "case")
    listed = html.Ul(items, className="case-sources", id="case-sources") if items else None
    if strip is None and listed is None:
        return html.P("–", className="audit-dim")
    return html.Div([strip, listed])


def _notices(state, notices: list[dict]):
    """The notices, one line per change and kind: to whom (one name, or how many), and whether the
    broker has taken them all."""
    if not notices:
        return html.P("–", className="audit-dim")
    groups: dict[tuple, list[dict]] = {}
    for n in notices:
        groups.setdefault((n["time"], n["kind"]), []).append(n)
    rows = []
    for (at, kind), items in list(groups.items())[-20:]:
        if len(items) == 1:
            member = state.city.member_by_terminal.get(items[0]["terminal_id"])
            who = member.name if member else items[0]["terminal_id"]
        else:
            who = f"{len(items)} terminals"
        unsent = sum(1 for n in items if n["sent_at"] is None)
        sent = str(Label("sent", "已送达")) if not unsent else f"{unsent} {Label('not yet sent', '待发送')}"
        rows.append(html.Li(f"{local(at)} · {kind} → {who} · {sent}"))
    return html.Ul(rows, className="case-notices", id="case-notices")

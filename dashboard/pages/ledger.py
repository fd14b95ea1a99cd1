"""Basic data (基础数据, issue 26): the ledger of the scope's people and houses, private by design.

Who: leaders and admins of an org unit (`LEDGER_ROLES`): they answer for a community's ledger.
Dispatchers and the wall's kiosk never see personal data here (they have the case's address);
a grid member registers from the handheld, not here.

- **Search** the scope's residents by a prefix of the name, by an ID number or a phone (exact,
  through the keyed index: the text is never logged or stored), or by address (a building's name,
  optionally a house number after it).
- **The building panel**: a building's floors × houses (rows: floors from the top; columns: each
  entrance's houses by number), each house coloured by its use, marked where a resident needs help
  first (core.ledger.NEEDS_HELP_FIRST) or, for a viewer granted to see them, holds a restricted tag;
  a house → its households and residents, the head first.
- **Masked by default**: ID numbers and phones leave the server only as their masks. A viewer
  granted Permission.UNMASK for a scope containing a resident (ledger.grants) sees a "show in full"
  control beside them; the full values come only after a reason is typed, through the command
  bus (`dashboard.ledger_commands.UnmaskResident`: authorized for the resident's grid, the grant checked inside the
  transaction, one audit row with who, when, which resident, the reason and the grid; never the
  values). Without the grant there is no control, and a forged callback is refused and audited.

Every callback authorizes the identity and the org selector's scope again (ledger.reads are
scoped), and reads the viewer's grants at each request (a revocation holds at once).
"""
from __future__ import annotations

import logging

from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from flask import current_app, request

from core import freetext
from core.catalogue import Label
from core.ledger import (
    GENDER_LABELS,
    HOUSE_USE_LABELS,
    NEEDS_HELP_FIRST,
    REGISTRATION_LABELS,
    RELATION_LABELS,
    RESTRICTED_TAGS,
    TAG_LABELS,
    HouseUse,
    Permission,
)
from dashboard.authz import Scope, asked_scope, authorize, current_identity
from dashboard.declarations import callback, page, query_params
from dashboard.ledger_commands import LEDGER_ROLES, UNMASK, UnmaskResident
from dashboard.state import app_state
from dashboard.vocabulary import HOUSE_USE_COLOURS
from ledger import privacy
from ledger import reads as ledger_reads
from ledger.reads import Building, HouseDetail, LedgerReads, Resident, SearchError, SearchKind

log = logging.getLogger(__name__)
TITLE = Label("Basic data", "基础数据")
_EXTENSION = "gcc.ledger"       # the app's LedgerReads (its pool and the sealer), made at first use
SEARCH_LABELS = {SearchKind.NAME: Label("name (its start)", "姓名（前几个字）"),
                 SearchKind.ID_NUMBER: Label("ID number (exact)", "身份证号（完整）"),
                 SearchKind.PHONE: Label("phone (exact)", "手机号（完整）"),
                 SearchKind.ADDRESS: Label("address (building, house)", "地址（楼栋、房号）")}
NEEDS_HELP_COLOUR, RESTRICTED_COLOUR = "#ff3b30", "#ffd60a"
_NAME = freetext.NAME


def ledger() -> LedgerReads:
    """This app's ledger reads, made once (the sealer from GCC_LEDGER_KEY; none configured, or a
    bad one: exact search and unmask say so, the rest works)."""
    found = current_app.extensions.get(_EXTENSION)
    if found is None:
        state = app_state()
        sealer = None
        try:
            key = state.settings.ledger_key.get_secret_value()
            sealer = privacy.Sealer(key) if key else None
        except ValueError as bad:        # says what is wrong, never the key
            log.error("the ledger's key is unusable: %s", bad)
        found = current_app.extensions[_EXTENSION] = LedgerReads(state.city, state.settings.pg_dsn, sealer)
    return found


# --- the layout ------------------------------------------------------------------------------------

def layout(state, scope: Scope, kiosk: bool = False):
    identity = current_identity()
    buildings, more = ledger().buildings(scope)
    options = [{"label": f"{_plain(name)} · {_plain(state.city.org_name(grid) or grid)}", "value": bid}
               for bid, name, grid in buildings]
    unmask = identity is not None and ledger().holds_any(identity.user, Permission.UNMASK, scope)
    return html.Div(className="audit ledger", id="ledger", children=[
        html.Div(className="dispatch-head", children=[
            html.H1(str(TITLE)), html.Div(scope.name, id="ledger-scope-name", className="dispatch-scope"),
            html.Div(str(Label("ID numbers and phones masked; every full view is audited",
                               "身份证号与手机号已脱敏；查看完整信息均留痕")), className="audit-dim"),
            section_links(scope, "/ledger", "ledger-links")]),
        dcc.Store(id="ledger-house"),
        html.Div(className="admin-columns", style={"gridTemplateColumns": "minmax(0, 1.1fr) minmax(0, 1fr)"}, children=[
            html.Section(className="wall-panel", children=[
                html.H2(str(Label("Search residents", "人口查询"))),
                html.Div(className="audit-controls", children=[
                    html.Label([str(Label("Search by", "查询方式")), dcc.Dropdown(
                        id="ledger-search-kind", value=SearchKind.NAME.value, clearable=False,
                        options=[{"label": str(v), "value": k.value} for k, v in SEARCH_LABELS.items()])]),
                    html.Label([str(Label("Find", "查找")), dcc.Input(
                        id="ledger-search", type="search", debounce=True, maxLength=ledger_reads.SEARCH_MAX,
                        autoComplete="off", placeholder=str(Label("name, number or address", "姓名、号码或地址")))]),
                ]),
                html.Div(id="ledger-results", role="status", style={"overflowX": "auto"}),
                _unmask_panel() if unmask else None,
            ]),
            html.Section(className="wall-panel", children=[
                html.H2(str(Label("Building", "楼栋"))),
                dcc.Dropdown(id="ledger-building", options=options, searchable=True, style={"color": "#111"},
                             placeholder=str(Label("choose a building", "选择楼栋"))),
                html.Div(str(Label(f"the first {len(options)} buildings: narrow the scope or search by address",
                                   f"仅列出前 {len(options)} 栋：请缩小范围或按地址查询")),
                         className="audit-dim") if more else None,
                _legend(identity is not None and ledger().holds_any(identity.user, Permission.RESTRICTED_TAGS, scope)),
                html.Div(id="ledger-building-panel"),
                html.Div(id="ledger-house-detail", style={"overflowX": "auto"}),
            ]),
        ]),
    ])


# nav=False until the header makes room (at 1366 px its navigation is full) and test_roles_browser's
# PAGES names it: /ledger is reached by its address meanwhile
PAGE = page("/ledger", TITLE, LEDGER_ROLES, layout, order=65, nav=False)

# the ledger's pages, reached from each other (none is in the header's navigation: it is full at 1366 px)
SECTIONS = ((PAGE.path, TITLE), ("/ledger/review", Label("Review queue", "审核")),
            ("/ledger/stats", Label("Statistics", "统计")), ("/ledger/map", Label("Map and 3D", "地图与三维")))


def section_links(scope: Scope, here: str, element_id: str) -> html.Div:
    """Links to the ledger's other pages, for the same scope."""
    return html.Div(id=element_id, style={"marginLeft": "auto", "display": "flex", "gap": "8px"},
                    children=[dcc.Link(str(label), href=f"{path}?scope={scope.code}" if scope.code else path,
                                       className="button small")
                              for path, label in SECTIONS if path != here])


def _legend(restricted: bool):
    swatches = [html.Span([html.Span(style={"background": HOUSE_USE_COLOURS[use], "display": "inline-block",
                                            "width": "12px", "height": "12px", "borderRadius": "2px",
                                            "marginRight": "4px"}), str(HOUSE_USE_LABELS[use])],
                          style={"marginRight": "12px"}) for use in HouseUse]
    marks = [html.Span([html.Span("●", style={"color": NEEDS_HELP_COLOUR}), " ",
                        str(Label("needs help first", "需优先关照"))], style={"marginRight": "12px"})]
    if restricted:      # only for a viewer granted to see them somewhere in the scope
        marks.append(html.Span([html.Span("◆", style={"color": RESTRICTED_COLOUR}), " ",
                                str(Label("restricted tag", "重点人员"))]))
    return html.Div(swatches + marks, id="ledger-legend", className="audit-dim",
                    style={"margin": "8px 0", "display": "flex", "flexWrap": "wrap", "rowGap": "4px"})


# the unmask form floats over the page's corner: a "full…" is pressed in either column, at any scroll
_UNMASK_SHOWN = {"display": "block", "position": "fixed", "right": "24px", "bottom": "24px", "zIndex": 1000,
                 "maxWidth": "520px", "background": "#1c1c1e", "boxShadow": "0 6px 24px rgba(0, 0, 0, 0.6)"}
_UNMASK_HIDDEN = {"display": "none"}


def _unmask_panel():
    """Only for a viewer granted UNMASK somewhere in the scope: hidden until a resident is picked;
    closing it takes the values in full off the screen."""
    return html.Div(id="ledger-unmask", style=_UNMASK_HIDDEN, className="admin-secret", children=[
        dcc.Store(id="ledger-unmask-resident"),
        html.Div(style={"display": "flex", "justifyContent": "space-between", "gap": "12px"}, children=[
            html.Div(id="ledger-unmask-whom"),
            html.Button("×", id="ledger-unmask-close", className="button small",
                        title=str(Label("close (the values leave the screen)", "关闭（完整信息不再显示）")))]),
        html.Div(className="admin-form", children=[
            dcc.Input(id="ledger-unmask-reason", maxLength=ledger_reads.UNMASK_REASON_MAX, autoComplete="off",
                      placeholder=str(Label("reason (required, recorded)", "查看事由（必填，留痕）")),
                      style={"width": "320px"}),
            html.Button(str(Label("Show in full", "查看完整信息")), id="ledger-unmask-go", className="button small"),
        ]),
        html.Div(id="ledger-unmask-result", role="status"),
    ])


# --- what is shown of a resident ---------------------------------------------------------------------

def _tags(resident: Resident):
    return [html.Span(str(TAG_LABELS[t]), className="ledger-tag",
                      style={"marginRight": "6px", "whiteSpace": "nowrap",
                             "color": RESTRICTED_COLOUR if t in RESTRICTED_TAGS
                             else NEEDS_HELP_COLOUR if t in NEEDS_HELP_FIRST else None}) for t in resident.tags]


def _name(text: str):
    """A stored name as text, cut to a name's length and isolated (<bdi>): a bidirectional override
    in it (planted, imported) turns only itself around, not the words after it."""
    return html.Bdi(freetext.shown(text, _NAME))


def _plain(text: str) -> str:
    """A stored name for a string-only place (a dropdown's label): cut, without bidirectional controls."""
    return "".join(c for c in freetext.shown(text, _NAME) if c not in freetext.BIDI_CONTROLS)


def _address(resident: Resident) -> list | str:
    if resident.building_id is None:
        return "–"
    return [_name(resident.building_name or ""), f" · {Label('entrance', '单元')} {resident.entrance} · "
                                                 f"{resident.house_number}"]


def _unmask_button(resident: Resident):
    """Only beside a resident whose grid the viewer holds UNMASK for (the form is in the page then)."""
    if not resident.may_unmask:
        return None
    return html.Button(str(Label("full…", "完整…")), className="button small", title=str(Label(
                           "see the ID number and phone in full (with a reason; recorded)",
                           "查看完整身份证号与手机号（需填写事由，留痕）")),
                       id={"type": "ledger-unmask-pick", "resident": resident.resident_id})


def _person_cells(resident: Resident, household: bool = False, address=None) -> list:
    """Name (gender, age, and in a household the relation and registration, under it; a search's
    address button), the masks (ID number over phone), tags, the unmask control."""
    age = "–" if resident.age is None else str(resident.age)
    about = f"{GENDER_LABELS[resident.gender]} · {age}" + (
        f" · {RELATION_LABELS[resident.relation]} · {REGISTRATION_LABELS[resident.registration]}" if household else "")
    return [html.Td([html.Div(_name(resident.name), className="ledger-name"),
                     html.Div(about, className="audit-dim"), address],
                    style={"maxWidth": "240px", "overflowWrap": "anywhere"}),
            html.Td([html.Div(resident.id_number_masked or "–"), html.Div(resident.phone_masked or "–")],
                    className="ledger-masked", style={"whiteSpace": "nowrap"}),
            html.Td(_tags(resident)),
            html.Td(_unmask_button(resident))]


_PERSON_HEAD = [Label("Resident", "人员"), Label("ID number · phone", "身份证号 · 手机号"), Label("Tags", "标签"), ""]


def results_table(found: list[Resident], more: bool):
    if not found:
        return html.P(str(Label("No resident matches in this scope.", "本范围内没有符合条件的人口。")),
                      className="placeholder")
    head = _PERSON_HEAD
    rows = [html.Tr(_person_cells(r, address=html.Button(
        _address(r), className="button small", disabled=r.house_id is None, title=str(Label("open the house",
                                                                                             "查看房屋")),
        style={"whiteSpace": "normal", "textAlign": "left", "marginTop": "3px"},
        id={"type": "ledger-open", "resident": r.resident_id, "house": r.house_id or 0,
            "building": r.building_id or ""}))) for r in found]
    count = (f"{len(found)} {str(Label('residents', '人'))}" if not more else
             f"{str(Label('the first', '前'))} {len(found)} — {str(Label('narrow the search', '请缩小查询'))}")
    return [html.Div(count, className="audit-dim"),
            html.Table(className="data-table", id="ledger-results-table",
                       children=[html.Thead(html.Tr([html.Th(str(h)) for h in head])), html.Tbody(rows)])]


# --- the building panel --------------------------------------------------------------------------------

def _columns(building: Building) -> list[tuple[int, int]]:
    """(entrance, position) per column: each entrance as wide as its fullest floor."""
    widest: dict[int, int] = {}
    for entrance in range(1, building.entrances + 1):
        widest[entrance] = 0
    per_floor: dict[tuple[int, int], int] = {}
    for house in building.houses:
        key = (house.entrance, house.floor)
        per_floor[key] = per_floor.get(key, 0) + 1
        widest[house.entrance] = max(widest.get(house.entrance, 0), per_floor[key])
    return [(e, p) for e in sorted(widest) for p in range(max(widest[e], 1))]


def _house_cell(house, picked: int | None):
    marks = [html.Span("●", style={"color": NEEDS_HELP_COLOUR}) if house.needs_help else None,
             html.Span("◆", style={"color": RESTRICTED_COLOUR}) if house.restricted else None]
    title = (f"{house.number} · {HOUSE_USE_LABELS[house.use]} · {house.residents} "
             f"{str(Label('residents', '人'))}")
    return html.Button([html.Span(house.number), *[m for m in marks if m is not None]], title=title,
                       id={"type": "ledger-house-cell", "house": house.house_id}, className="ledger-house",
                       style={"background": HOUSE_USE_COLOURS[house.use], "color": "#fff", "border": "2px solid "
                              + ("#fff" if house.house_id == picked else "transparent"), "borderRadius": "4px",
                              "minWidth": "58px", "padding": "4px 6px", "cursor": "pointer", "fontSize": "14px"})


def building_grid(building: Building, picked: int | None = None):
    """Floors from the top down × each entrance's houses by number."""
    columns = _columns(building)
    cells: dict[tuple[int, int, int], object] = {}
    by_floor: dict[tuple[int, int], list] = {}
    for house in building.houses:
        by_floor.setdefault((house.entrance, house.floor), []).append(house)
    for (entrance, floor), houses in by_floor.items():
        for position, house in enumerate(sorted(houses, key=lambda h: (len(h.number), h.number))):
            cells[(floor, entrance, position)] = _house_cell(house, picked)
    floors = sorted({h.floor for h in building.houses}, reverse=True)
    entrances = sorted({e for e, _ in columns})
    head = html.Tr([html.Th(str(Label("floor", "楼层")))] + [
        html.Th(f"{e} {str(Label('entrance', '单元'))}", colSpan=sum(1 for c in columns if c[0] == e))
        for e in entrances])
    rows = [html.Tr([html.Td(f"{floor}F", className="audit-dim")]
                    + [html.Td(cells.get((floor, e, p))) for e, p in columns]) for floor in floors]
    return [html.Div([_name(building.name), f" · {building.floors} {str(Label('floors', '层'))} · "
                     f"{len(building.houses)} {str(Label('houses', '户'))}"], id="ledger-building-name"),
            html.Div(style={"overflowX": "auto"}, children=html.Table(
                id="ledger-building-grid", className="data-table", children=[html.Thead(head), html.Tbody(rows)]))]


def house_detail(detail: HouseDetail):
    house = detail.house
    head = _PERSON_HEAD
    tables = []
    for n, household in enumerate(detail.households, 1):
        rows = [html.Tr(_person_cells(r, household=True)) for r in household.residents]
        tables += [html.Div(f"{str(Label('household', '户'))} {n}", className="audit-dim"),
                   html.Table(className="data-table ledger-household", children=[
                       html.Thead(html.Tr([html.Th(str(h)) for h in head])), html.Tbody(rows)])]
    area = f" · {house.area_m2:g} m²" if house.area_m2 else ""
    return html.Div(id="ledger-house-view", children=[
        html.H2([_name(detail.building_name),
                 f" · {house.entrance} {str(Label('entrance', '单元'))} · {house.number}"]),
        html.Div(f"{HOUSE_USE_LABELS[house.use]}{area} · {house.residents} {str(Label('residents', '人'))}",
                 className="audit-dim"),
        *(tables or [html.P(str(Label("Nobody lives here (in the ledger).", "暂无登记人口。")),
                            className="placeholder")])])


# --- callbacks ---------------------------------------------------------------------------------------

def _asked(url_search: str | None):
    """(who asks, the scope of the URL they may see) or (who, the refusal's words)."""
    identity = current_identity()
    decision = authorize(app_state().city, identity, PAGE, asked_scope(identity, query_params(url_search)))
    return (identity, decision.scope) if decision else (identity, decision.reason)


def _an_id(value) -> bool:
    """A record's id as a callback may carry it (a crafted request may carry anything)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2 ** 63


def _refused(reason: str):
    return html.P(f"{str(Label('Refused', '已拒绝'))}: {reason}", className="admin-refused")


@callback(Output("ledger-results", "children"),
          Input("ledger-search", "value"), Input("ledger-search-kind", "value"), State("shell-url", "search"),
          prevent_initial_call=True, roles=PAGE.roles,
          why="residents of the scope found (masked; authorizes the scope)")
def search(text, kind, url_search):
    """The scope's residents matching the search, masked. The text searched is not logged."""
    identity, scope = _asked(url_search)
    if not isinstance(scope, Scope):
        return _refused(scope)
    if not (text or "").strip():
        return None
    try:
        found, more = ledger().search(scope, identity.user, kind, text)
    except SearchError as bad:
        return html.P(str(bad), className="audit-error")
    return results_table(found, more)


@callback(Output("ledger-house", "data"), Output("ledger-building", "value"),
          Input({"type": "ledger-house-cell", "house": ALL}, "n_clicks"),
          Input({"type": "ledger-open", "resident": ALL, "house": ALL, "building": ALL}, "n_clicks"),
          prevent_initial_call=True, roles=PAGE.roles, why="a house picked (the panel reads it, authorized there)")
def pick_house(_cells, _opened):
    """A house cell or a result's address: which house (and building) to show. No data: the
    panel's callbacks authorize and read."""
    trigger = ctx.triggered_id
    if trigger is None or not ctx.triggered[0]["value"]:
        return no_update, no_update
    house = trigger.get("house") or None
    return house, trigger.get("building") or no_update


@callback(Output("ledger-building-panel", "children"),
          Input("ledger-building", "value"), Input("ledger-house", "data"), State("shell-url", "search"),
          prevent_initial_call=True, roles=PAGE.roles, why="a building's floors × houses (authorizes the scope)")
def show_building(building_id, house_id, url_search):
    identity, scope = _asked(url_search)
    if not isinstance(scope, Scope):
        return _refused(scope)
    if not building_id:
        return None
    building = ledger().building(scope, identity.user, str(building_id))
    if building is None:
        return _refused(str(Label("no such building in this scope", "本范围内无此楼栋")))
    return building_grid(building, house_id if isinstance(house_id, int) else None)


@callback(Output("ledger-house-detail", "children"),
          Input("ledger-house", "data"), State("shell-url", "search"),
          prevent_initial_call=True, roles=PAGE.roles, why="a house's households and residents (masked; authorizes "
                                                          "the scope)")
def show_house(house_id, url_search):
    identity, scope = _asked(url_search)
    if not isinstance(scope, Scope):
        return _refused(scope)
    if house_id is None:
        return None
    if not _an_id(house_id):
        return _refused(str(Label("a house is picked by its number in the ledger", "请选择房屋")))
    detail = ledger().house(scope, identity.user, house_id)
    if detail is None:
        return _refused(str(Label("no such house in this scope", "本范围内无此房屋")))
    return house_detail(detail)


# --- unmask ------------------------------------------------------------------------------------------

@callback(Output("ledger-unmask", "style"), Output("ledger-unmask-resident", "data"),
          Output("ledger-unmask-whom", "children"), Output("ledger-unmask-reason", "value"),
          Output("ledger-unmask-result", "children"),
          Input({"type": "ledger-unmask-pick", "resident": ALL}, "n_clicks"), Input("ledger-unmask-close", "n_clicks"),
          State("shell-url", "search"), prevent_initial_call=True, roles=PAGE.roles,
          why="whom the unmask form opens (masked; authorizes the scope), or closing it")
def pick_unmask(_clicks, _close, url_search):
    """The form for one resident of the scope (named by their masked values; nothing in full), or
    the form closed and emptied."""
    trigger = ctx.triggered_id
    if trigger is None or not ctx.triggered[0]["value"]:
        return (no_update,) * 5
    if trigger == "ledger-unmask-close":
        return _UNMASK_HIDDEN, None, None, "", None
    identity, scope = _asked(url_search)
    if not isinstance(scope, Scope):
        return _UNMASK_SHOWN, None, _refused(scope), "", None
    resident_id = trigger.get("resident")
    resident = ledger().resident(scope, identity.user, resident_id) if _an_id(resident_id) else None
    if resident is None or not resident.may_unmask:
        return _UNMASK_SHOWN, None, _refused(str(Label("not a resident you may see in full",
                                                              "无权查看该人员完整信息"))), "", None
    whom = [_name(resident.name), f" · {resident.id_number_masked or '–'} · {resident.phone_masked or '–'}"]
    return _UNMASK_SHOWN, resident.resident_id, whom, "", None


@callback(Output("ledger-unmask-result", "children", allow_duplicate=True),
          Input("ledger-unmask-go", "n_clicks"), State("ledger-unmask-resident", "data"),
          State("ledger-unmask-reason", "value"), prevent_initial_call=True,
          roles=PAGE.roles, why="a resident's ID number and phone in full, with a reason (granted, audited)",
          changes=(UNMASK,))
def unmask(_clicks, resident_id, reason):
    """Through the bus: authorized for the resident's grid, the grant checked, audited; the
    values shown once, here, and stored nowhere."""
    if not _an_id(resident_id):
        return _refused(str(Label("pick a resident first", "请先选择人员")))
    result = app_state().commands.execute(current_identity(), UnmaskResident(resident_id, reason or "",
                                                                              ledger().sealer), request.remote_addr)
    if not result.ok:
        return _refused(result.reason)
    values = result.handed
    return html.Div(id="ledger-unmasked", children=[
        html.Div([str(Label("ID number", "身份证号")), ": ", html.Code(values[privacy.ID_NUMBER] or "–")]),
        html.Div([str(Label("Phone", "手机号")), ": ", html.Code(values[privacy.PHONE] or "–")]),
        html.Div(str(Label("this view is recorded in the audit trail", "本次查看已记入审计日志")),
                 className="audit-dim")])

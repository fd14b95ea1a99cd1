"""The ledger's statistics (基础数据统计, issue 26): bar and pie charts of an org unit's basic data,
per child unit, with drill-down.

Who: the basic-data page's roles (`LEDGER_ROLES`), over the org selector's scope, authorized on the
server at every request (the router for the page; the drill-down callback again for the child).

- Population by registration (户籍/流动/境外) per child, by age band and by care tag; restricted
  tags only for a viewer holding Permission.RESTRICTED_TAGS over the whole scope (otherwise the
  database does not even count them: ledger.stats);
- houses by use per child; shops and units by kind, fire-safety key units; parts by kind and
  state; changes of the ledger per month by action and channel.
- **Drill-down**: the bars of a per-child chart are the scope's children (district → streets →
  communities → grids); a click on one scopes the page to it (the URL's scope, so the org
  selector follows and the router authorizes it). The path above leads back up.

Counts only: no name, ID number or phone is read here.
"""
from __future__ import annotations

import plotly.graph_objects as go
from dash import Input, Output, State, ctx, dcc, html, no_update
from flask import current_app

from core.catalogue import Label
from core.ledger import (
    CHANGE_ACTION_LABELS,
    CHANNEL_LABELS,
    HOUSE_USE_LABELS,
    NEEDS_HELP_FIRST,
    REGISTRATION_LABELS,
    RESTRICTED_TAGS,
    TAG_LABELS,
    THING_KIND_LABELS,
    THING_STATE_LABELS,
    ChangeAction,
    Channel,
    HouseUse,
    Registration,
    Tag,
    ThingKind,
    ThingState,
)
from core.orgcodes import ancestors
from dashboard.authz import Scope, asked_scope, authorize, current_identity
from dashboard.declarations import callback, page, query_params
from dashboard.kpi_figures import plot_text
from dashboard.ledger_commands import LEDGER_ROLES
from dashboard.pages.ledger import NEEDS_HELP_COLOUR, RESTRICTED_COLOUR, section_links
from dashboard.state import app_state
from dashboard.vocabulary import (
    CHANGE_ACTION_COLOURS,
    HOUSE_USE_COLOURS,
    REGISTRATION_COLOURS,
    SEQUENTIAL_COLOURS,
    THING_STATE_COLOURS,
)
from ledger.stats import AGE_BAND_NAMES, UNKNOWN_AGE, UNKNOWN_AGE_LABEL, LedgerStats, StatsReads

TITLE = Label("Basic data statistics", "基础数据统计")
_EXTENSION = "gcc.ledger_stats"
_LAYOUT = {"template": "plotly_dark", "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
           "margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "font": {"size": 13}, "height": 330,
           "legend": {"orientation": "h", "y": -0.18}}
_SIDE_LEGEND = {"orientation": "v", "x": 1.01, "y": 1, "yanchor": "top"}    # clear of the units' names below
_GRAPH = {"displaylogo": False, "displayModeBar": False}
DRILL_CHARTS = ("registration", "houses")      # the per-child charts a click drills into
# what core.ledger does not label yet (ChangeAction, Channel): labelled here, keyed by its values
_NO_DATA = Label("nothing in the ledger here yet", "本范围暂无数据")


def stats_reads() -> StatsReads:
    """This app's statistics reads (a pool of the dashboard's connections), made at first use."""
    found = current_app.extensions.get(_EXTENSION)
    if found is None:
        state = app_state()
        found = current_app.extensions[_EXTENSION] = StatsReads(state.city, state.settings.pg_dsn)
    return found


# --- the layout ------------------------------------------------------------------------------------

def layout(state, scope: Scope, kiosk: bool = False):
    identity = current_identity()
    stats = stats_reads().stats(scope, identity.user)
    names = {code: plot_text(name) for code, name in stats.children}
    return html.Div(className="kpis ledger-stats", id="ledger-stats", children=[
        html.Div(className="dispatch-head", children=[
            html.H1(str(TITLE)), html.Div(_path(state, identity, scope), id="ledger-stats-path",
                                          className="dispatch-scope"),
            html.Div(str(Label("counts only; a bar of a unit opens it", "仅统计数量；点击柱条进入下级")),
                     className="audit-dim"),
            section_links(scope, "/ledger/stats", "ledger-stats-links")]),
        html.Div(_tiles(stats), id="ledger-stats-tiles", className="kpis-cards"),
        html.Div(className="kpis-charts", children=[
            _graph("registration", _per_child(
                stats, names, stats.registration, Registration, REGISTRATION_LABELS, REGISTRATION_COLOURS,
                Label("Population by registration", "人口（户籍类型）"))),
            _graph("ages", _ages(stats)),
            _graph("tags", _tags(stats)),
            _graph("houses", _per_child(stats, names, stats.houses, HouseUse, HOUSE_USE_LABELS, HOUSE_USE_COLOURS,
                                        Label("Houses by use", "房屋（用途）"))),
            _graph("units", _units(stats)),
            _graph("parts", _parts(stats)),
            _graph("changes", _changes(stats)),
        ]),
    ])


PAGE = page("/ledger/stats", TITLE, LEDGER_ROLES, layout, order=66, nav=False)


def _path(state, identity, scope: Scope) -> list:
    """The scope's ancestors the viewer may open (links up), then the scope itself."""
    above = ["", *ancestors(scope.code)] if scope.code else []
    reachable = [code for code in above if code != scope.code and (
        not identity.scope_code or code.startswith(identity.scope_code))]
    links = []
    for code in reachable:
        name = state.city.org_name(code) if code else state.city.name
        links += [dcc.Link(name, href=f"{PAGE.path}?scope={code}" if code else PAGE.path,
                           className="kpis-drill"), " › "]
    return [*links, html.Span(scope.name, id="ledger-stats-scope")]


def _tiles(stats: LedgerStats) -> list:
    residents = sum(stats.total(stats.registration).values())
    houses = sum(stats.total(stats.houses).values())
    damaged = sum(n for (_, state), n in stats.parts.items() if state != ThingState.GOOD)
    tiles = [("residents", residents, Label("residents", "实有人口")), ("houses", houses, Label("houses", "房屋")),
             ("units", sum(stats.unit_kinds.values()), Label("shops and units", "门店/单位")),
             ("fire", sum(stats.fire_key_units.values()), Label("fire-safety key units", "消防重点单位")),
             ("parts", sum(stats.parts.values()), Label("parts", "部件")),
             ("damaged", damaged, Label("parts not in order", "部件异常"))]
    return [html.Div(className="wall-tile kpis-card", id=f"ledger-stats-{key}", children=[
        html.Div(f"{value:,}", className="wall-tile-value"), html.Div(str(label), className="wall-tile-label")])
        for key, value, label in tiles]


def _graph(name: str, figure: go.Figure):
    return dcc.Graph(id=f"ledger-stats-{name}", figure=figure, config=_GRAPH, className="wall-panel kpis-chart",
                     style={"cursor": "pointer"} if name in DRILL_CHARTS else None)


def _figure(title: Label, data, empty: bool = False, note: str = "", **layout) -> go.Figure:
    """A chart in the house's dark layout, its title over a note (a second line, dimmer)."""
    fig = go.Figure(data=data)
    heading = {"text": str(title), "font": {"size": 15}}
    if note:
        heading["subtitle"] = {"text": note, "font": {"size": 12, "color": "#8e8e93"}}
    margin = {**_LAYOUT["margin"], **layout.pop("margin", {}), **({"t": 62} if note else {})}
    fig.update_layout(**{**_LAYOUT, **layout, "margin": margin}, title=heading)
    if empty:
        fig.add_annotation(text=str(_NO_DATA), showarrow=False, font={"size": 15, "color": "#8e8e93"},
                           xref="paper", yref="paper", x=0.5, y=0.5)
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    return fig


def _per_child(stats: LedgerStats, names: dict, counts: dict, values, labels, colours, title: Label) -> go.Figure:
    """Stacked bars, one per child of the scope (its code in customdata: a click drills into it)."""
    codes = [code for code, _ in stats.children]
    x = [names[code] for code in codes]
    data = [go.Bar(x=x, y=[counts.get(code, {}).get(v.value, 0) for code in codes], name=str(labels[v]),
                   marker_color=colours[v], customdata=codes,
                   hovertemplate="%{x}<br>" + plot_text(str(labels[v])) + ": %{y:,}<extra></extra>") for v in values]
    return _figure(title, data, empty=not any(counts.values()), barmode="stack", legend=_SIDE_LEGEND,
                   xaxis={"tickangle": -30, "automargin": True})


def _ages(stats: LedgerStats) -> go.Figure:
    total = stats.total(stats.ages)
    bands = [*AGE_BAND_NAMES, UNKNOWN_AGE]
    shown = [b for b in bands if total.get(b)]
    names = [str(UNKNOWN_AGE_LABEL) if b == UNKNOWN_AGE else f"{b} {Label('years', '岁')}" for b in shown]
    colours = [dict(zip(bands, [*SEQUENTIAL_COLOURS, "#8e8e93"], strict=True))[b] for b in shown]
    return _figure(Label("Population by age", "人口（年龄段）"),
                   [go.Pie(labels=names, values=[total[b] for b in shown], hole=0.45, sort=False,
                           marker={"colors": colours}, textinfo="percent")], empty=not shown)


def _tags(stats: LedgerStats) -> go.Figure:
    total = stats.total(stats.tags)
    tags = [t for t in Tag if t not in RESTRICTED_TAGS or stats.restricted_counted][::-1]
    colours = [NEEDS_HELP_COLOUR if t in NEEDS_HELP_FIRST else RESTRICTED_COLOUR if t in RESTRICTED_TAGS
               else "#0a84ff" for t in tags]
    note = "" if stats.restricted_counted else str(Label("restricted tags not shown", "重点人员标签未显示"))
    return _figure(Label("Residents by tag", "人口（关注标签）"),
                   [go.Bar(y=[str(TAG_LABELS[t]) for t in tags], x=[total.get(t.value, 0) for t in tags],
                           orientation="h", marker_color=colours, hovertemplate="%{y}: %{x:,}<extra></extra>")],
                   empty=not total, note=note, margin={"l": 170})


def _units(stats: LedgerStats) -> go.Figure:
    """Shops and units by kind (the commonest twelve), and the fire-safety key units among them."""
    kinds = list(stats.unit_kinds.items())[:12][::-1]
    fire = sum(stats.fire_key_units.values())
    return _figure(Label("Shops and units by kind", "门店/单位（类别）"),
                   [go.Bar(y=[plot_text(k.replace("_", " ")) for k, _ in kinds], x=[n for _, n in kinds],
                           orientation="h", marker_color="#bf5af2", hovertemplate="%{y}: %{x:,}<extra></extra>")],
                   empty=not kinds, note=str(Label(f"{fire:,} fire-safety key units", f"消防重点单位 {fire:,} 家")),
                   margin={"l": 140})


def _parts(stats: LedgerStats) -> go.Figure:
    kinds = [k for k in ThingKind if any(kind == k for kind, _ in stats.parts)]
    data = [go.Bar(x=[str(THING_KIND_LABELS[k]) for k in kinds], y=[stats.parts.get((k.value, s.value), 0)
                                                                     for k in kinds],
                   name=str(THING_STATE_LABELS[s]), marker_color=THING_STATE_COLOURS[s]) for s in ThingState]
    return _figure(Label("Parts by kind and state", "部件（类别与状态）"), data, empty=not kinds, barmode="stack",
                   legend=_SIDE_LEGEND)


def _changes(stats: LedgerStats) -> go.Figure:
    """Records created, updated and deleted per month (stacked by action; the channels in the hover)."""
    months = sorted({m for m, _, _, _ in stats.changes})
    data = []
    for action in ChangeAction:
        per = {m: sum(n for mm, a, _, n in stats.changes if mm == m and a == action) for m in months}
        via = {m: " · ".join(f"{CHANNEL_LABELS[Channel(c)]} {n:,}" for mm, a, c, n in stats.changes
                             if mm == m and a == action) for m in months}
        data.append(go.Bar(x=months, y=[per[m] for m in months], name=str(CHANGE_ACTION_LABELS[action]),
                           marker_color=CHANGE_ACTION_COLOURS[action], customdata=[via[m] for m in months],
                           hovertemplate="%{x}: %{y:,}<br>%{customdata}<extra></extra>"))
    return _figure(Label("Changes per month", "每月变更"), data, empty=not months, barmode="stack",
                   xaxis={"type": "category"}, legend=_SIDE_LEGEND,
                   note=str(Label("records created, updated, deleted; by channel in the hover",
                                  "新增、变更、删除的记录；来源见悬停提示")))


# --- drill-down ----------------------------------------------------------------------------------------

@callback(Output("shell-url", "search", allow_duplicate=True),
          *[Input(f"ledger-stats-{name}", "clickData") for name in DRILL_CHARTS], State("shell-url", "search"),
          prevent_initial_call=True, roles=PAGE.roles,
          why="a bar of a child unit scopes the page to it (authorizes the child)")
def drill(*args):
    """The clicked bar's child unit as the URL's scope, if the viewer may open it there (the router
    authorizes it again); anything else clicked, or a forged child, changes nothing."""
    *clicks, url_search = args
    clicked = clicks[DRILL_CHARTS.index(ctx.triggered_id.removeprefix("ledger-stats-"))] if ctx.triggered_id else None
    points = (clicked or {}).get("points") if isinstance(clicked, dict) else None
    child = points[0].get("customdata") if isinstance(points, list) and points and isinstance(points[0], dict) else None
    if not isinstance(child, str):
        return no_update
    identity = current_identity()
    params = query_params(url_search)
    here = authorize(app_state().city, identity, PAGE, asked_scope(identity, params))
    there = authorize(app_state().city, identity, PAGE, child)
    if not here or not there or child == here.scope.code or not child.startswith(here.scope.code):
        return no_update
    return f"?scope={child}"

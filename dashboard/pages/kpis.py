"""The leaders' KPIs (考核): the standard indicators of an org unit for a day, week, month or any
range, with their change since the period before; the automatic ranking of its child units by the
configured composite score (grades coloured, ▲▼ since the period before, sortable, a row drills
down one level); charts by category, by outcome, by stage, by unit and per day; the overdue and
rework lists linking to the case pages; every table as CSV (`/kpis.csv?table=…`, audited).

Everything comes from the rollups (kpis/report.py: sums over sums). Every number explains itself
on hover: its definition, numerator and denominator. The callbacks and the export ask authz for the
identity and the scope on every request: a street's leader sees their street and what is under it.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from urllib.parse import urlencode

from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from flask import Response, request

from core.catalogue import CASE_CATEGORY_LABELS, CASE_STATE_LABELS, DIARY_CATEGORIES, ORG_LEVEL_LABELS, Label
from core.city import CITY_TZ
from core.orgcodes import LENGTHS, contains
from core.roles import UserRole
from dashboard import kpi_figures as fig
from dashboard.authz import Scope, asked_scope, authorize, current_identity
from dashboard.declarations import callback, export, page, query_params
from dashboard.kpis_diary import RATE_DIARY, RateDiary
from dashboard.pages.cases import local
from dashboard.pages.export import authorized_export, csv_response
from dashboard.state import app_state
from kpis import pdf
from kpis.indicators import COUNT_BY_KEY, RATE_BY_KEY, RATES, Totals
from kpis.report import Period, Ranked, child_length, rank

EXPORT_PATH = "/kpis.csv"
REPORT_PATH = "/kpis.pdf"
TABLES = ("ranking", "categories", "days", "overdue", "rework")
PERIOD_LABELS = {"day": Label("Day", "日"), "week": Label("Week", "周"), "month": Label("Month", "月"),
                 "custom": Label("Range", "自定义")}
CARDS = (("count", "registered"), ("count", "closed"), ("rate", "closure"), ("rate", "on_time_closure"),
         ("rate", "on_time_dispatch"), ("rate", "on_time_handling"), ("rate", "rework"), ("rate", "extension"),
         ("overdue_now", ""), ("count", "went_overdue"), ("duration", "accept"), ("duration", "close"),
         ("rate", "inspection"), ("rate", "active"), ("field", "alarms"), ("field", "ack"), ("field", "read"),
         ("diary", "per_member"), ("diary", "rating"))
# the ranking's columns: key, heading, what kind of value
RANK_COLUMNS = (("place", Label("Place", "名次"), "place"), ("name", Label("Unit", "单位"), "name"),
                ("score", Label("Score", "得分"), "score"), ("grade", Label("Grade", "等级"), "grade"),
                *((r.key, r.label, "rate") for r in RATES if r.key != "overdue"),
                ("registered", COUNT_BY_KEY["registered"].label, "count"), ("due", COUNT_BY_KEY["due"].label, "count"),
                ("went_overdue", COUNT_BY_KEY["went_overdue"].label, "count"),
                ("close_p90", Label("Close p90", "结案用时p90"), "duration"),
                ("diary", Label("Diary / member", "人均民情日记"), "diary"))
LIST_ROWS = 50


def _today() -> date:
    return datetime.now(CITY_TZ).date()


def period_from(params: dict) -> Period:
    """The period a URL or the controls ask for (ValueError with the reason)."""
    kind = params.get("period") or "month"
    try:
        if kind == "custom":
            return Period.of(kind, date.fromisoformat(params.get("from", "")), date.fromisoformat(params.get("to", "")))
        return Period.of(kind, date.fromisoformat(params["day"]) if params.get("day") else _today(), today=_today())
    except (TypeError, ValueError) as bad:
        raise ValueError(f"not a period: {bad}") from None


def period_params(period: Period) -> dict[str, str]:
    if period.kind == "custom":
        return {"period": "custom", "from": period.first.isoformat(), "to": period.last.isoformat()}
    return {"period": period.kind, "day": period.first.isoformat()}


def layout(state, scope: Scope, kiosk: bool = False, params: dict | None = None):
    today = _today()
    try:
        period = period_from(params or {})
    except ValueError:
        period = Period.of("month", today)
    anchor = period.first if period.kind != "custom" else today
    level = ORG_LEVEL_LABELS.get(LENGTHS.get(len(scope.code), ""), None) if scope.code else None
    return html.Div(className="kpis", id="kpis", children=[
        html.Div(className="kpis-head", children=[
            html.H1(str(Label("Leaders' KPIs", "考核指标"))),
            html.Div([html.Span(scope.name, id="kpis-scope-name"),
                      html.Span(f" · {level}" if level else "", className="kpis-level")], className="dispatch-scope"),
            html.Div(className="kpis-period", children=[
                dcc.RadioItems(id="kpis-period", value=period.kind, inline=True, className="wall-window",
                               options=[{"label": str(v), "value": k} for k, v in PERIOD_LABELS.items()]),
                dcc.DatePickerSingle(id="kpis-day", date=anchor, display_format="YYYY-MM-DD", max_date_allowed=today,
                                     first_day_of_week=1),
                dcc.DatePickerRange(id="kpis-range", start_date=period.first, end_date=period.last,
                                    display_format="YYYY-MM-DD", max_date_allowed=today, first_day_of_week=1),
                html.Span(id="kpis-period-label", className="kpis-period-label"),
            ]),
            html.Div(id="kpis-exports", className="kpis-exports"),
        ]),
        html.Div(id="kpis-error", className="audit-error", role="alert"),
        html.Div(id="kpis-cards", className="kpis-cards"),
        dcc.Store(id="kpis-sort", data={"by": "place", "desc": False}),
        html.Div(className="wall-panel kpis-rank-panel", children=[
            html.H2(id="kpis-rank-title"),
            html.Div(id="kpis-formula", className="kpis-formula"),
            html.Div(id="kpis-ranking", className="kpis-ranking"),
        ]),
        html.Div(className="kpis-charts", children=[
            dcc.Graph(id=f"kpis-chart-{name}", config={"displaylogo": False, "displayModeBar": False},
                      className="wall-panel kpis-chart")
            for name in ("units", "trend", "categories", "outcomes", "stages", "durations")]),
        html.Div(className="kpis-lists", children=[
            html.Div(className="wall-panel", children=[html.H2(str(Label("Overdue now", "当前超期"))),
                                                       html.Div(id="kpis-overdue")]),
            html.Div(className="wall-panel", children=[html.H2(str(Label("Reworked in the period", "期内返工"))),
                                                       html.Div(id="kpis-rework")]),
            html.Div(className="wall-panel", children=[
                html.H2(str(Label("People's diary", "民情日记"))),
                html.Div(id="kpis-diary-result", className="admin-result", role="status"),
                html.Div(id="kpis-diary")]),
        ]),
    ])


PAGE = page("/kpis", Label("KPIs", "考核"), frozenset({UserRole.LEADER, UserRole.ADMIN}), layout, takes_params=True,
            order=50)


@callback(Output("kpis-sort", "data"), Input({"type": "kpis-sort", "col": ALL}, "n_clicks"), State("kpis-sort", "data"),
          prevent_initial_call=True,
          roles=PAGE.roles, why="the ranking's sort column (no data)")
def sort_by(clicks, current):
    if not ctx.triggered_id or not any(clicks):
        return no_update
    column = ctx.triggered_id["col"]
    return {"by": column, "desc": not current["desc"] if current["by"] == column else column not in ("place", "name")}


@callback(Output("kpis-error", "children"), Output("kpis-cards", "children"), Output("kpis-rank-title", "children"),
          Output("kpis-formula", "children"), Output("kpis-ranking", "children"),
          Output("kpis-chart-units", "figure"), Output("kpis-chart-trend", "figure"),
          Output("kpis-chart-categories", "figure"), Output("kpis-chart-outcomes", "figure"),
          Output("kpis-chart-stages", "figure"), Output("kpis-chart-durations", "figure"),
          Output("kpis-overdue", "children"), Output("kpis-diary", "children"), Output("kpis-rework", "children"),
          Output("kpis-exports", "children"), Output("kpis-period-label", "children"),
          Output("kpis-day", "style"), Output("kpis-range", "style"),
          Input("kpis-period", "value"), Input("kpis-day", "date"), Input("kpis-range", "start_date"),
          Input("kpis-range", "end_date"), Input("kpis-sort", "data"), State("shell-url", "search"),
          roles=PAGE.roles,
          why="the KPIs of the scope and period: cards, ranking, charts, lists (authorizes the scope)")
def show(kind, day, first, last, sort, search):
    state, identity = app_state(), current_identity()
    decision = authorize(state.city, identity, PAGE, asked_scope(identity, query_params(search)))
    nothing = (no_update,) * 17
    if not decision:
        return (html.P(decision.reason, className="refusal"), *nothing)
    try:
        period = period_from({"period": kind, "day": (day or "")[:10], "from": (first or "")[:10],
                              "to": (last or "")[:10]})
    except ValueError as bad:
        return (str(bad), *nothing)
    scope = decision.scope
    report = state.queries.kpi_report(scope, period)
    overdue, overdue_count = state.queries.overdue_now(scope, LIST_ROWS)
    field = state.queries.field_indicators(scope, period)
    ranked = _ranked(state, scope, report)
    custom = kind == "custom"
    return ("", _cards(report, overdue_count, field), _rank_title(scope), _formula(state),
            _ranking(state, ranked, sort or {}, period),
            fig.by_unit(ranked, lambda c: _short(state, c)), fig.trend(report), fig.by_category(report),
            fig.due_outcomes(report), fig.by_stage(report), fig.durations(report),
            _overdue_list(state, overdue, overdue_count), _diary_list(state, state.queries.diary(scope, period)),
            _rework_list(state, state.queries.reworked(scope, period, LIST_ROWS)), _exports(scope, period),
            f"{period.label()} · {Label('compared with', '对比')} {period.previous().label()}",
            {"display": "none"} if custom else {}, {} if custom else {"display": "none"})


def _children(state, scope: Scope) -> list[str]:
    n = child_length(scope.code)
    if n is None:
        return []
    units = {6: state.city.districts, 9: state.city.streets, 12: state.city.communities}.get(n)
    codes = [u.code for u in units] if units is not None else [g.code for g in state.city.grids]
    return [c for c in codes if contains(scope.code, c) and len(c) == n]


def _ranked(state, scope: Scope, report) -> list[Ranked]:
    return rank(report, _children(state, scope), state.assessment)


def _short(state, code: str) -> str:
    name = state.city.org_name(code)
    return name.split(" · ")[-1] if " · " in name else name


# --- the headline cards -------------------------------------------------------------------------------

def _change(now: float | None, before: float | None, better_up: bool | None, as_rate: bool,
            hours: bool = False) -> html.Span:
    if now is None or before is None or now == before:
        return html.Span("=" if now is not None and now == before else "", className="kpis-delta")
    up = now > before
    arrow = "▲" if up else "▼"
    text = f"{arrow} {abs(now - before) * 100:.1f} pt" if as_rate else f"{arrow} {fig.hours(abs(now - before))}" \
        if hours else f"{arrow} {abs(now - before):,.0f}"
    good = None if better_up is None else (up == better_up)
    return html.Span(text, className="kpis-delta " + ("good" if good else "bad" if good is False else ""))


def _card(label: str, value: str, title: str, delta, key: str) -> html.Div:
    return html.Div(className="wall-tile kpis-card", id=f"kpis-card-{key}", title=title, children=[
        html.Div(value, className="wall-tile-value"), html.Div(label, className="wall-tile-label"), delta])


def diary_per_member(t: Totals) -> float | None:
    return t.count("diary_entries") / t.count("members") if t.count("members") else None


def _diary_card(key: str, now: Totals) -> html.Div:
    if key == "per_member":
        per = diary_per_member(now)
        return _card(str(Label("Diary entries per member", "人均民情日记")), "–" if per is None else f"{per:.1f}",
                     f"people's-feelings diary entries written in the period per member of the scope: "
                     f"{now.count('diary_entries'):,} / {now.count('members'):,}", html.Span(className="kpis-delta"),
                     "diary")
    rated = now.count("diary_rated")
    mean = now.count("diary_rating_sum") / rated if rated else None
    return _card(str(Label("Diary quality", "日记质量")), "–" if mean is None else f"{mean:.1f} / 5",
                 f"mean of the leaders' ratings (1-5) of the period's entries: {rated:,} of "
                 f"{now.count('diary_entries'):,} rated", html.Span(className="kpis-delta"), "diary-rating")


def _field_card(key: str, field: dict) -> html.Div:
    """Devices and announcements: alarms per 1,000 devices, time to acknowledge, announcements read."""
    if key == "alarms":
        value = f"{1000 * field['alarms'] / field['devices']:.1f}" if field["devices"] else "–"
        return _card(str(Label("Alarms per 1,000 devices", "每千台设备告警")), value,
                     f"device alarms raised in the period per 1,000 devices of the scope: {field['alarms']:,} alarms, "
                     f"{field['devices']:,} devices", html.Span(className="kpis-delta"), "alarms")
    if key == "ack":
        return _card(str(Label("Time to acknowledge", "告警确认用时")), fig.hours(field["ack_s"]),
                     f"mean time from an alarm raised in the period to a person acknowledging it: "
                     f"{field['acknowledged']:,} of {field['alarms']:,} acknowledged",
                     html.Span(className="kpis-delta"), "ack")
    share = field["read"] / field["recipients"] if field["recipients"] else None
    return _card(str(Label("Announcements read", "通知阅读率")), fig.percent(share),
                 f"recipients of the announcements sent in the scope in the period who read them: {field['read']:,} / "
                 f"{field['recipients']:,}", html.Span(className="kpis-delta"), "read")


def _cards(report, overdue_now: int, field: dict) -> list:
    now, before = report.total, report.previous
    cards = []
    for kind, key in CARDS:
        if kind == "rate":
            rate = RATE_BY_KEY[key]
            value = now.rate(key)
            cards.append(_card(str(rate.label), fig.percent(value.value),
                               fig.rate_title(key, now) + f"\nBefore: {fig.percent(before.rate(key).value)}",
                               _change(value.value, before.rate(key).value, rate.higher_is_better, True), key))
        elif kind == "count":
            count = COUNT_BY_KEY[key]
            cards.append(_card(str(count.label), f"{now.count(key):,}",
                               fig.count_title(key) + f"\nBefore: {before.count(key):,}",
                               _change(now.count(key), before.count(key), count.higher_is_better, False), key))
        elif kind == "overdue_now":
            cards.append(html.Div(className="wall-tile kpis-card" + (" wall-tile-alert" if overdue_now else ""),
                                  id="kpis-card-overdue-now",
                                  title="Open cases of the scope past their stage's deadline right now.",
                                  children=[html.Div(f"{overdue_now:,}", className="wall-tile-value"),
                                            html.Div(str(Label("Overdue now", "当前超期")),
                                                     className="wall-tile-label")]))
        elif kind == "field":
            cards.append(_field_card(key, field))
        elif kind == "diary":
            cards.append(_diary_card(key, now))
        else:
            label, mean, p90, title = fig.duration_cell(now, key)
            before_mean = before.histogram(key).mean_s
            cards.append(_card(label, mean, title + f"\nBefore: {fig.hours(before_mean)}",
                               html.Div([html.Span(p90, className="wall-tile-sub"), " ",
                                         _change(now.histogram(key).mean_s, before_mean, False, False, hours=True)]),
                               f"time-{key}"))
    return cards


# --- the ranking ----------------------------------------------------------------------------------------

def _rank_title(scope: Scope) -> str:
    n = child_length(scope.code)
    if n is None:
        return str(Label("A grid is ranked within its community", "网格在社区内排名"))
    level = ORG_LEVEL_LABELS[LENGTHS[n]]
    return f"{Label('Ranking of', '排名:')} {level} · {scope.name}"


def _formula(state) -> str:
    a = state.assessment
    return f"{Label('Score', '得分')} = {a.formula.text} · {a.grades.describe()} · " \
           f"{Label('rates as fractions; ties share a place', '比率按小数计，同分同名次')}"


def _value(state, r: Ranked, key: str, kind: str):
    if kind == "place":
        return r.place
    if kind == "name":
        return state.city.org_name(r.code)
    if kind == "score":
        return r.score
    if kind == "grade":
        return r.grade
    if kind == "rate":
        return r.totals.rate(key).value
    if kind == "count":
        return r.totals.count(key)
    if kind == "diary":
        return diary_per_member(r.totals)
    return r.totals.histogram("close").quantile_s(0.9)


def _sorted(state, ranked: list[Ranked], sort: dict) -> list[Ranked]:
    by = sort.get("by", "place")
    kind = next((k for c, _, k in RANK_COLUMNS if c == by), "place")
    known = [r for r in ranked if _value(state, r, by, kind) is not None]
    unknown = [r for r in ranked if _value(state, r, by, kind) is None]
    known.sort(key=lambda r: _value(state, r, by, kind), reverse=bool(sort.get("desc")))
    return known + unknown


def _moved(r: Ranked) -> html.Span:
    if r.moved is None:
        return html.Span("new" if r.place is not None and r.previous_place is None else "", className="kpis-moved")
    if r.moved == 0:
        return html.Span("=", className="kpis-moved")
    return html.Span(f"{'▲' if r.moved > 0 else '▼'}{abs(r.moved)}", className="kpis-moved " +
                     ("good" if r.moved > 0 else "bad"), title=f"place {r.previous_place} the period before")


def _cell(state, r: Ranked, key: str, kind: str, drill: str):
    if kind == "place":
        return html.Td([html.Span(str(r.place or "–")), _moved(r)], className="kpis-place")
    if kind == "name":
        return html.Td(dcc.Link(_short(state, r.code), href=drill, className="kpis-drill"),
                       title=f"{state.city.org_name(r.code)} · {r.code}: open its KPIs")
    if kind == "score":
        before = f"; {fig.score_text(r.previous_score)} the period before" if r.previous_score is not None else ""
        return html.Td(fig.score_text(r.score), title=f"{state.assessment.formula.text}{before}")
    if kind == "grade":
        return html.Td(html.Span(r.grade or "–", className=f"kpis-grade kpis-grade-{r.grade or 'none'}"))
    if kind == "rate":
        return html.Td(fig.percent(r.totals.rate(key).value), title=fig.rate_title(key, r.totals))
    if kind == "count":
        return html.Td(f"{r.totals.count(key):,}", title=fig.count_title(key))
    if kind == "diary":
        per = diary_per_member(r.totals)
        return html.Td("–" if per is None else f"{per:.1f}",
                       title=f"people's-feelings diary entries in the period per member: "
                             f"{r.totals.count('diary_entries'):,} / {r.totals.count('members'):,}")
    h = r.totals.histogram("close")
    return html.Td(fig.hours(h.quantile_s(0.9)), title=f"time to close, p90 of {h.n:,}")


def _ranking(state, ranked: list[Ranked], sort: dict, period: Period):
    if not ranked:
        return html.P(str(Label("Choose a community or higher to see a ranking.", "选择社区或以上单位查看排名。")),
                      className="placeholder")
    by, desc = sort.get("by", "place"), sort.get("desc", False)
    head = html.Thead(html.Tr([html.Th(html.Button(
        [label.zh + ((" ▼" if desc else " ▲") if key == by else ""), html.Br(), html.Small(label.en)],
        id={"type": "kpis-sort", "col": key}, className="kpis-sort", title=f"sort by {label.en}"))
        for key, label, _ in RANK_COLUMNS]))
    rows = []
    for r in _sorted(state, ranked, sort):
        drill = f"{PAGE.path}?{urlencode({'scope': r.code, **period_params(period)})}"
        rows.append(html.Tr([_cell(state, r, key, kind, drill) for key, _, kind in RANK_COLUMNS],
                            className=f"kpis-rank-row grade-{r.grade or 'none'}", id=f"kpis-row-{r.code}"))
    return html.Table(className="data-table kpis-table", id="kpis-table", children=[head, html.Tbody(rows)])


# --- the lists ------------------------------------------------------------------------------------------

def _case_row(state, c, extra: str):
    return html.Div(className="queue-row kpis-case", children=[
        html.A(c.case_id, href=f"/case/{c.case_id}", className="case-link"),
        html.Span(f"{CASE_CATEGORY_LABELS.get(c.category, c.category)} · {CASE_STATE_LABELS[c.state.value]}",
                  className="row-title"),
        html.Span(state.city.org_name(c.org_code), className="row-where"),
        html.Span(extra, className="row-time"),
    ])


def _overdue_list(state, cases, total: int):
    if not cases:
        return html.P(str(Label("Nothing is overdue.", "没有超期案件。")), className="empty")
    now = datetime.now(timezone.utc)
    shown = [_case_row(state, c, f"{fig.hours((now - c.deadline).total_seconds())} {Label('over', '超时')}")
             for c in cases]
    more = [html.P(f"{len(cases)} of {total:,}: the export has them all", className="empty")] \
        if total > len(cases) else []
    return shown + more


def _diary_list(state, entries):
    if not entries:
        return html.P(str(Label("No diary entries in the period.", "期内无民情日记。")), className="empty")
    options = [{"label": f"{n} ★", "value": n} for n in range(1, 6)]
    rows = []
    for at, terminal_id, entry_id, category, text, rating in entries:
        member = state.city.member_by_terminal.get(terminal_id)
        rows.append(html.Div(className="queue-row kpis-diary-row", children=[
            html.Span(local(at), className="row-time"),
            html.Span(f"{member.name if member else terminal_id} · {DIARY_CATEGORIES.get(category, category).zh}",
                      className="row-where"),
            html.Span(text, className="row-title"),
            dcc.Dropdown(id={"type": "kpis-diary-rate", "t": terminal_id, "e": entry_id, "r": rating or 0},
                         options=options, value=rating, placeholder=str(Label("rate", "评分")), clearable=False,
                         className="kpis-diary-rate"),
        ]))
    return rows


@callback(Output("kpis-diary-result", "children"), Input({"type": "kpis-diary-rate", "t": ALL, "e": ALL, "r": ALL},
                                                         "value"), prevent_initial_call=True,
          roles=RATE_DIARY.roles, why="a leader rates a diary entry (authorized for its grid)", changes=(RATE_DIARY,))
def rate_diary(_values):
    """A leader's rating of a diary entry (dashboard/commands.py: authorized for its grid, audited)."""
    trigger = ctx.triggered_id
    value = ctx.triggered[0]["value"] if ctx.triggered else None
    if not trigger or value is None or value == trigger["r"]:
        return no_update            # drawn, not chosen
    state, identity = app_state(), current_identity()
    result = state.commands.execute(identity, RateDiary(trigger["t"], trigger["e"], int(value)), request.remote_addr)
    if not result.ok:
        return html.Span(f"{Label('Refused', '已拒绝')}: {result.reason}", className="admin-refused")
    return html.Span(f"{Label('Rated', '已评分')} {value} ★ · {result.summary}", className="admin-done")


def _rework_list(state, reworked):
    if not reworked:
        return html.P(str(Label("No rework in the period.", "期内无返工。")), className="empty")
    return [_case_row(state, c, f"× {n} · {local(last)}") for c, n, last in reworked]


def _exports(scope: Scope, period: Period):
    base = {"scope": scope.code, **period_params(period)}
    names = {"ranking": Label("ranking", "排名"), "categories": Label("categories", "分类"),
             "days": Label("per day", "每日"), "overdue": Label("overdue", "超期"), "rework": Label("rework", "返工")}
    return [html.A(str(Label("Report PDF", "考核报告 PDF")), href=f"{REPORT_PATH}?{urlencode(base)}",
                   className="button", id="kpis-export-pdf"),
            html.Span("CSV:", className="kpis-exports-label")] + [
        html.A(str(label), href=f"{EXPORT_PATH}?{urlencode({**base, 'table': table})}", className="button",
               id=f"kpis-export-{table}") for table, label in names.items()]


# --- CSV ------------------------------------------------------------------------------------------------

def _export_selection(args) -> tuple[str, Period]:
    table = args.get("table", "ranking")
    if table not in TABLES:
        raise ValueError(f"table is one of {', '.join(TABLES)}")
    return table, period_from(args)


def _rate_columns() -> list[str]:
    return [h for r in RATES for h in (r.key, f"{r.key}_numerator", f"{r.key}_denominator")]


def _totals_cells(t: Totals) -> list:
    out = []
    for r in RATES:
        v = t.rate(r.key)
        out += [None if v.value is None else round(v.value, 4), v.numerator, v.denominator]
    return out + [t.count(c.key) for c in COUNT_BY_KEY.values()]


@export(EXPORT_PATH, PAGE.roles, "a KPI table as CSV (authorizes the scope; audited)")
def export_csv():
    """`/kpis.csv?table=ranking|categories|days|overdue|rework&scope=…&period=…&day=…` (or from/to)."""
    asked = authorized_export(PAGE, "kpi.export", EXPORT_PATH, _export_selection)
    if isinstance(asked, Response):
        return asked
    state, scope, (table, period) = asked
    report = state.queries.kpi_report(scope, period)
    stamp = f"{scope.code or 'city'}-{period.first:%Y%m%d}-{period.last:%Y%m%d}"
    counts = list(COUNT_BY_KEY)
    if table == "ranking":
        header = ["place", "previous_place", "org_code", "org_name", "score", "grade", *_rate_columns(), *counts]
        rows = ([r.place, r.previous_place, r.code, state.city.org_name(r.code),
                 None if r.score is None else round(r.score, 2), r.grade, *_totals_cells(r.totals)]
                for r in _ranked(state, scope, report))
    elif table == "categories":
        header = ["category", "category_name", *_rate_columns(), *counts]
        rows = ([c, fig.category_name(c), *_totals_cells(t)] for c, t in sorted(report.categories.items()))
    elif table == "days":
        header = ["day", *_rate_columns(), *counts]
        rows = ([d.isoformat(), *_totals_cells(report.days[d])] for d in sorted(report.days))
    elif table == "overdue":
        header = ["case_id", "category", "state", "org_code", "org_name", "deadline", "overdue_hours"]
        now = datetime.now(timezone.utc)
        cases, _ = state.queries.overdue_now(scope, 100_000)
        rows = ([c.case_id, c.category, c.state.value, c.org_code, state.city.org_name(c.org_code),
                 c.deadline.astimezone(CITY_TZ).isoformat(), round((now - c.deadline).total_seconds() / 3600, 2)]
                for c in cases)
    else:
        header = ["case_id", "category", "state", "org_code", "org_name", "failed_verifications", "last_failed_at"]
        rows = ([c.case_id, c.category, c.state.value, c.org_code, state.city.org_name(c.org_code), n,
                 last.astimezone(CITY_TZ).isoformat()] for c, n, last in state.queries.reworked(scope, period, 100_000))
    return csv_response(f"kpis-{table}-{stamp}.csv", header, rows)


@export(REPORT_PATH, PAGE.roles, "the assessment report as PDF (authorizes the scope; audited)")
def export_pdf():
    """`/kpis.pdf?scope=…&period=month&day=…`: the assessment report of the scope and period (audited)."""
    asked = authorized_export(PAGE, "kpi.report", REPORT_PATH, period_from)
    if isinstance(asked, Response):
        return asked
    state, scope, period = asked
    report = state.queries.kpi_report(scope, period)
    identity = current_identity()
    body = pdf.render(report, _ranked(state, scope, report), state.assessment, scope.name,
                      lambda code: _short(state, code), identity.display_name or identity.user,
                      datetime.now(timezone.utc))
    name = f"kpis-report-{scope.code or 'city'}-{period.first:%Y%m%d}-{period.last:%Y%m%d}.pdf"
    return Response(body, mimetype="application/pdf",
                    headers={"Content-Disposition": f"attachment; filename={name}", "Cache-Control": "no-store"})

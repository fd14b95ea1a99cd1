"""The KPI page's charts (Plotly) and the way its numbers are written, as pure functions of a
report: the page (dashboard/pages/kpis.py) and the monthly PDF (kpis/pdf.py) draw from the same."""
from __future__ import annotations

import plotly.graph_objects as go

from core.catalogue import CASE_CATEGORY_LABELS, Label
from kpis.facts import STAGES
from kpis.indicators import (  # noqa: F401  (percent, hours: the page writes its numbers as the report does)
    COUNT_BY_KEY,
    MEASURE_DEFINITIONS,
    MEASURE_LABELS,
    RATE_BY_KEY,
    Totals,
    hours,
    percent,
)
from kpis.report import Ranked, Report

STAGE_NAMES = {"register": Label("register", "立案"), "dispatch": Label("dispatch", "派遣"),
               "accept": Label("accept", "接单"), "handle": Label("handle", "处置"), "verify": Label("verify", "核查"),
               "close": Label("close", "结案")}
GRADE_COLOURS = {"A": "#2ea043", "B": "#58a6ff", "C": "#d29922", "D": "#f0883e", "E": "#f85149"}
_LAYOUT = {"template": "plotly_dark", "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
           "margin": {"l": 10, "r": 10, "t": 36, "b": 10}, "font": {"size": 13},
           "legend": {"orientation": "h", "y": -0.15}, "height": 320}


def score_text(score: float | None) -> str:
    return "–" if score is None else f"{score:.1f}"


def rate_title(key: str, totals: Totals) -> str:
    """What a rate is, and its numerator and denominator here (the hover of every rate shown)."""
    rate, value = RATE_BY_KEY[key], totals.rate(key)
    return (f"{rate.label}: {rate.definition}.\n"
            f"{value.numerator:,} / {value.denominator:,} = {percent(value.value)} "
            f"(sum of numerators over sum of denominators)")


def count_title(key: str) -> str:
    count = COUNT_BY_KEY[key]
    return f"{count.label}: {count.definition}."


def plot_text(value: str) -> str:
    """Data as Plotly shows it: Plotly reads tags (<b>, <a href>, <br>) in its labels, so a name's
    markup is written as entities, which it shows as the characters they are."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def category_name(code: str) -> str:
    label = CASE_CATEGORY_LABELS.get(code)
    return label.zh if label else code


def _figure(title: Label, data, **layout) -> go.Figure:
    fig = go.Figure(data=data)
    fig.update_layout(**{**_LAYOUT, **layout}, title={"text": str(title), "font": {"size": 15}})
    return fig


def by_category(report: Report, top: int = 12) -> go.Figure:
    rows = sorted(report.categories.items(), key=lambda kv: -kv[1].count("registered"))[:top][::-1]
    names = [plot_text(category_name(c)) for c, _ in rows]
    return _figure(Label("By category", "分类统计"), [
        go.Bar(y=names, x=[t.count("registered") for _, t in rows], orientation="h", name="立案 registered",
               marker_color="#58a6ff"),
        go.Bar(y=names, x=[t.count("closed") for _, t in rows], orientation="h", name="结案 closed",
               marker_color="#2ea043"),
    ], barmode="group")


def due_outcomes(report: Report) -> go.Figure:
    t = report.total
    on_time, closed, due = t.count("due_on_time"), t.count("due_closed"), t.count("due")
    labels = ["按期结案 closed on time", "结案 (超期/延期/缓办) closed otherwise", "未结 open"]
    values = [on_time, closed - on_time, due - closed]
    return _figure(Label("Cases due to close", "应结案构成"), [
        go.Pie(labels=labels, values=values, hole=0.45, sort=False,
               marker={"colors": ["#2ea043", "#d29922", "#f85149"]}, textinfo="percent+value")])


def by_stage(report: Report) -> go.Figure:
    t = report.total
    stages = [s for s in STAGES if t.count(f"stage:{s}:due")]
    due = [t.count(f"stage:{s}:due") for s in stages]
    on_time = [t.count(f"stage:{s}:on_time") for s in stages]
    return _figure(Label("On time by stage", "各环节按时率"), [
        go.Bar(x=[str(STAGE_NAMES[s]) for s in stages], y=[100 * o / d for o, d in zip(on_time, due, strict=True)],
               customdata=list(zip(on_time, due, strict=True)), marker_color="#58a6ff",
               hovertemplate="%{x}: %{y:.1f} %% (%{customdata[0]} / %{customdata[1]})<extra></extra>")],
        yaxis={"range": [0, 100], "ticksuffix": " %"})


def by_unit(ranked: list[Ranked], name_of) -> go.Figure:
    scored = [r for r in ranked if r.score is not None]
    return _figure(Label("Score by unit", "综合得分"), [
        go.Bar(x=[plot_text(name_of(r.code)) for r in scored], y=[r.score for r in scored],
               marker_color=[GRADE_COLOURS.get(r.grade or "", "#8b9bb0") for r in scored],
               text=[r.grade for r in scored], textposition="outside",
               hovertemplate="%{x}: %{y:.1f}<extra></extra>")], yaxis={"range": [0, 105]})


def trend(report: Report) -> go.Figure:
    days = sorted(report.days)
    rows = [report.days[d] for d in days]
    handling = [r.rate("on_time_handling").value for r in rows]
    return _figure(Label("Per day", "每日趋势"), [
        go.Scatter(x=days, y=[r.count("registered") for r in rows], name="立案 registered", mode="lines+markers",
                   line={"color": "#58a6ff"}),
        go.Scatter(x=days, y=[r.count("closed") for r in rows], name="结案 closed", mode="lines+markers",
                   line={"color": "#2ea043"}),
        go.Scatter(x=days, y=[None if h is None else 100 * h for h in handling], name="按期处置率 on-time handling %",
                   yaxis="y2", mode="lines", line={"color": "#d29922", "dash": "dot"}),
    ], yaxis2={"overlaying": "y", "side": "right", "range": [0, 100], "ticksuffix": " %", "showgrid": False},
        xaxis={"type": "date"})


_HOURS = "%{x}: %{y:.2f} h<extra></extra>"


def durations(report: Report) -> go.Figure:
    t = report.total
    measures = [m for m in MEASURE_LABELS if t.histogram(m).n]
    names = [STAGE_NAMES[m].zh for m in measures]
    mean = [t.histogram(m).mean_s / 3600 for m in measures]
    p90 = [t.histogram(m).quantile_s(0.9) / 3600 for m in measures]
    return _figure(Label("Time taken (hours)", "各环节用时（小时）"), [
        go.Bar(x=names, y=mean, name="平均 mean", marker_color="#58a6ff", hovertemplate=_HOURS),
        go.Bar(x=names, y=p90, name="p90", marker_color="#d29922", hovertemplate=_HOURS),
    ], barmode="group", yaxis={"type": "log", "tickvals": [0.01, 0.1, 1, 10, 100, 1000],
                               "ticktext": ["36 s", "6 min", "1 h", "10 h", "100 h", "1000 h"]})


def duration_cell(totals: Totals, measure: str) -> tuple[str, str, str, str]:
    """(label, mean, "p90 …", hover) of a measured duration."""
    h, label = totals.histogram(measure), MEASURE_LABELS[measure]
    return (str(label), hours(h.mean_s), f"p90 {hours(h.quantile_s(0.9))}",
            f"{label}: {MEASURE_DEFINITIONS[measure]}. Mean of {h.n:,}: {hours(h.mean_s)}; 90 % took at most "
            f"{hours(h.quantile_s(0.9))} (from a log histogram: within 10 %).")


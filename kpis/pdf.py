"""The assessment report as PDF (月度考核报告): the headline indicators with their change, the
ranking with grades, three charts and every definition, for an org unit and a period.

WeasyPrint renders it from HTML and CSS with Debian's Noto Sans CJK (fonts-noto-cjk), embedded as
a subset: the file reads the same on any machine, with no font installed there (ReportLab's
built-in STSong-Light is not embedded, so it depends on the reader's Asian fonts, and ReportLab
cannot embed Noto's CFF outlines). Charts are inline SVG drawn here (kpis/svg.py), so the PDF
needs no browser and no image library.
"""
from __future__ import annotations

from datetime import datetime
from html import escape

from core.catalogue import CASE_CATEGORY_LABELS
from core.city import CITY_TZ
from kpis import svg
from kpis.indicators import COUNTS, MEASURE_DEFINITIONS, MEASURE_LABELS, RATES, Assessment, Totals, hours, percent
from kpis.report import Ranked, Report

GRADE_COLOURS = {"A": "#1a7f37", "B": "#0969da", "C": "#9a6700", "D": "#bc4c00", "E": "#cf222e"}
CSS = """
@page { size: A4; margin: 16mm 14mm 18mm; @bottom-center { content: counter(page) " / " counter(pages);
        font-size: 8pt; color: #57606a; font-family: "Noto Sans CJK SC"; } }
html, body { font-family: "Noto Sans CJK SC", sans-serif; font-size: 9.5pt; color: #1f2328; }
h1 { font-size: 17pt; margin: 0 0 2mm; } h2 { font-size: 12pt; margin: 6mm 0 2mm; border-bottom: 1px solid #d0d7de; }
.meta { color: #57606a; margin-bottom: 4mm; }
table { border-collapse: collapse; width: 100%; } th, td { border-bottom: 1px solid #d8dee4; padding: 1.2mm 1.5mm;
  text-align: right; } th { background: #f6f8fa; font-weight: 700; } td.l, th.l { text-align: left; }
.grade { display: inline-block; min-width: 5mm; text-align: center; color: white; border-radius: 1mm;
  font-weight: 700; }
.up { color: #1a7f37; } .down { color: #cf222e; }
.charts svg { margin: 2mm 0; } dl { margin: 0; } dt { font-weight: 700; margin-top: 1.5mm; } dd { margin: 0 0 0 4mm; }
"""


def _change(now: float | None, before: float | None, better_up: bool, as_rate: bool) -> str:
    if now is None or before is None or now == before:
        return ""
    up = now > before
    good = up == better_up
    text = f"{abs(now - before) * 100:.1f} pt" if as_rate else f"{abs(now - before):,.0f}"
    return f'<span class="{"up" if good else "down"}">{"▲" if up else "▼"} {text}</span>'


def _headline(total: Totals, previous: Totals) -> str:
    rows = []
    for r in RATES:
        v, b = total.rate(r.key), previous.rate(r.key)
        rows.append(f'<tr><td class="l">{escape(str(r.label))}</td><td>{percent(v.value)}</td>'
                    f"<td>{v.numerator:,} / {v.denominator:,}</td><td>{percent(b.value)}</td>"
                    f"<td>{_change(v.value, b.value, r.higher_is_better, True)}</td></tr>")
    for c in COUNTS:
        n, b = total.count(c.key), previous.count(c.key)
        rows.append(f'<tr><td class="l">{escape(str(c.label))}</td><td>{n:,}</td><td></td><td>{b:,}</td>'
                    f"<td>{_change(n, b, c.higher_is_better is not False, False)}</td></tr>")
    for m, label in MEASURE_LABELS.items():
        h, hb = total.histogram(m), previous.histogram(m)
        rows.append(f'<tr><td class="l">{escape(str(label))}</td><td>{hours(h.mean_s)}</td>'
                    f"<td>p90 {hours(h.quantile_s(0.9))}</td><td>{hours(hb.mean_s)}</td><td></td></tr>")
    return ('<table><tr><th class="l">指标 Indicator</th><th>本期 This period</th><th>分子 / 分母</th>'
            f'<th>上期 Before</th><th>变化 Change</th></tr>{"".join(rows)}</table>')


def _ranking(ranked: list[Ranked], name_of) -> str:
    rows = []
    for r in ranked:
        moved = "" if r.moved in (None, 0) else f' <span class="{"up" if r.moved > 0 else "down"}">' \
                                                 f'{"▲" if r.moved > 0 else "▼"}{abs(r.moved)}</span>'
        grade = f'<span class="grade" style="background:{GRADE_COLOURS.get(r.grade, "#8c959f")}">{r.grade}</span>' \
            if r.grade else "–"
        t = r.totals
        rows.append(f"<tr><td>{r.place or '–'}{moved}</td><td class='l'>{escape(name_of(r.code))}</td>"
                    f"<td>{'–' if r.score is None else f'{r.score:.1f}'}</td><td>{grade}</td>"
                    f"<td>{percent(t.rate('closure').value)}</td><td>{percent(t.rate('on_time_closure').value)}</td>"
                    f"<td>{percent(t.rate('on_time_handling').value)}</td><td>{percent(t.rate('rework').value)}</td>"
                    f"<td>{t.count('registered'):,}</td><td>{t.count('due'):,}</td></tr>")
    return ("<table><tr><th>名次</th><th class='l'>单位 Unit</th><th>得分</th><th>等级</th><th>结案率</th>"
            "<th>按期结案率</th><th>按期处置率</th><th>返工率</th><th>立案数</th><th>应结案数</th></tr>"
            f"{''.join(rows)}</table>")


def _definitions(assessment: Assessment) -> str:
    items = [f"<dt>{escape(str(r.label))} = {r.numerator} / {r.denominator}</dt><dd>{escape(r.definition)}</dd>"
             for r in RATES]
    items += [f"<dt>{escape(str(c.label))}</dt><dd>{escape(c.definition)}</dd>" for c in COUNTS]
    items += [f"<dt>{escape(str(label))}</dt><dd>{escape(MEASURE_DEFINITIONS[m])}; p90 from a log histogram "
              "(within 10 %)</dd>" for m, label in MEASURE_LABELS.items()]
    items.append(f"<dt>综合得分 Score = {escape(assessment.formula.text)}</dt><dd>rates as fractions; "
                 f"grades {escape(assessment.grades.describe())}; ties share a place. Every rate is the sum of "
                 "its numerators over the sum of its denominators (never an average of averages).</dd>")
    return f"<dl>{''.join(items)}</dl>"


def render(report: Report, ranked: list[Ranked], assessment: Assessment, scope_name: str, name_of,
           generated_by: str, now: datetime) -> bytes:
    """The PDF's bytes."""
    from weasyprint import HTML

    period = report.period
    scored = [r for r in ranked if r.score is not None]
    days = sorted(report.days)
    categories = sorted(report.categories.items(), key=lambda kv: -kv[1].count("registered"))[:10]
    charts = [
        svg.bars("综合得分 Score by unit", [name_of(r.code).split()[-1] for r in scored], [r.score for r in scored],
                 [GRADE_COLOURS.get(r.grade or "", "#8c959f") for r in scored], top=100),
        svg.lines("每日立案与结案 Registered and closed per day", [d.strftime("%m-%d") for d in days],
                  {"立案 registered": ([report.days[d].count("registered") for d in days], "#0969da"),
                   "结案 closed": ([report.days[d].count("closed") for d in days], "#1a7f37")}),
        svg.bars("分类立案 Registered by category", [CASE_CATEGORY_LABELS[c].zh if c in CASE_CATEGORY_LABELS else c
                                                for c, _ in categories],
                 [t.count("registered") for _, t in categories], ["#0969da"] * len(categories)),
    ]
    title = "月度考核报告" if period.kind == "month" else "考核报告"
    body = (f"<h1>{escape(scope_name)} · {title} Assessment report</h1>"
            f'<div class="meta">{escape(period.label())} · compared with {escape(period.previous().label())} · '
            f"generated {now.astimezone(CITY_TZ):%Y-%m-%d %H:%M} by {escape(generated_by)}</div>"
            f"<h2>主要指标 Indicators</h2>{_headline(report.total, report.previous)}"
            + (f"<h2>排名 Ranking</h2>{_ranking(ranked, name_of)}" if ranked else "")
            + f'<h2>图表 Charts</h2><div class="charts">{"".join(charts)}</div>'
            f"<h2>指标定义 Definitions</h2>{_definitions(assessment)}")
    html = f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><style>{CSS}</style></head>' \
           f"<body>{body}</body></html>"
    return HTML(string=html).write_pdf()

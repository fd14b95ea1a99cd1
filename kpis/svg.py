"""Small SVG charts for the PDF report (kpis/pdf.py): vertical bars and lines, with their labels as
text (the PDF's own font draws them), sized for an A4 page's width."""
from __future__ import annotations

from html import escape

WIDTH, HEIGHT = 680, 220
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 28, 46


def _frame(title: str, top: float) -> list[str]:
    h = HEIGHT - TOP - BOTTOM
    parts = [f'<text x="{LEFT}" y="16" font-size="12" font-weight="700">{escape(title)}</text>']
    for i in range(5):
        v = top * i / 4
        y = TOP + h - h * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d8dee4"/>'
                     f'<text x="{LEFT - 4}" y="{y + 3:.1f}" font-size="8" text-anchor="end">{v:,.0f}</text>')
    return parts


def _svg(parts: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" style="font-family: \'Noto Sans CJK SC\'">{"".join(parts)}</svg>')


def _nice(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 10 ** max(0, len(str(int(value))) - 1)
    return (int(value / step) + 1) * step


def bars(title: str, labels: list[str], values: list[float], colours: list[str], top: float | None = None) -> str:
    top = top or _nice(max(values, default=0))
    parts = _frame(title, top)
    h, w = HEIGHT - TOP - BOTTOM, WIDTH - LEFT - RIGHT
    slot = w / max(len(values), 1)
    for i, (label, value, colour) in enumerate(zip(labels, values, colours, strict=True)):
        bh = h * min(value, top) / top
        x = LEFT + i * slot + slot * 0.15
        text = f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"
        parts.append(f'<rect x="{x:.1f}" y="{TOP + h - bh:.1f}" width="{slot * 0.7:.1f}" height="{bh:.1f}" '
                     f'fill="{colour}"/><text x="{x + slot * 0.35:.1f}" y="{TOP + h - bh - 3:.1f}" font-size="8" '
                     f'text-anchor="middle">{text}</text>')
        parts.append(f'<text x="{x + slot * 0.35:.1f}" y="{TOP + h + 12}" font-size="8" text-anchor="middle">'
                     f"{escape(label[:10])}</text>")
    return _svg(parts)


def lines(title: str, labels: list[str], series: dict[str, tuple[list[float], str]]) -> str:
    top = _nice(max((v for values, _ in series.values() for v in values), default=0))
    parts = _frame(title, top)
    h, w = HEIGHT - TOP - BOTTOM, WIDTH - LEFT - RIGHT
    step = w / max(len(labels) - 1, 1)
    for i, label in enumerate(labels):
        if len(labels) <= 16 or i % max(1, len(labels) // 12) == 0:
            parts.append(f'<text x="{LEFT + i * step:.1f}" y="{TOP + h + 12}" font-size="8" text-anchor="middle">'
                         f"{escape(label)}</text>")
    for n, (name, (values, colour)) in enumerate(series.items()):
        points = " ".join(f"{LEFT + i * step:.1f},{TOP + h - h * v / top:.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        parts.append(f'<rect x="{LEFT + n * 160}" y="{HEIGHT - 14}" width="10" height="8" fill="{colour}"/>'
                     f'<text x="{LEFT + n * 160 + 14}" y="{HEIGHT - 7}" font-size="9">{escape(name)}</text>')
    return _svg(parts)

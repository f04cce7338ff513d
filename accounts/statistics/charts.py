"""Horizontal bar charts drawn on the server as accessible SVG (no script, no styles
that a Content-Security-Policy would refuse): ``role="img"`` named by its ``<title>``
and ``<desc>`` through ``aria-labelledby``; the description repeats every number, and
the page shows the same numbers as a table beside the chart."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 640
LABEL_WIDTH = 150  # the bars' labels, right-aligned before the bars
VALUE_WIDTH = 90  # room for the number after the longest bar
ROW = 30
BAR = 20
PAD = 8
FILL = "#1f5fa8"  # 7:1 against white, like the page's accent
TEXT = "#1b1b1b"


@dataclass(frozen=True)
class Bar:
    label: str
    value: float  # 0 or more (a rate with nothing to divide by: 0, its text says so)
    text: str  # the number as the page shows it ("75.0%", "1.50", "12")


def bar_chart(
    chart_id: str, title: str, description: str, bars: Sequence[Bar], *, maximum: float = 0
) -> Markup:
    """One SVG chart. ``chart_id`` must be unique on the page (its ids derive from it);
    bars scale to ``maximum`` or, when that is 0, to the largest value."""
    top = max([maximum, *(bar.value for bar in bars)]) or 1
    span = WIDTH - LABEL_WIDTH - VALUE_WIDTH - 2 * PAD
    height = PAD * 2 + ROW * max(len(bars), 1)
    summary = "; ".join(f"{bar.label}: {bar.text}" for bar in bars)
    ident = escape(chart_id)
    opening = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'aria-labelledby="{ident}-title {ident}-desc" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}">'
    )
    parts = [
        opening,
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(description)} {escape(summary)}</desc>',
    ]
    for index, bar in enumerate(bars):
        y = PAD + index * ROW
        middle = y + ROW / 2
        width = round(span * max(bar.value, 0) / top, 1)
        parts.append(
            f'<g><text x="{LABEL_WIDTH}" y="{middle}" text-anchor="end" '
            f'dominant-baseline="middle" fill="{TEXT}">{escape(bar.label)}</text>'
            f'<rect x="{LABEL_WIDTH + PAD}" y="{y + (ROW - BAR) / 2}" width="{width}" '
            f'height="{BAR}" fill="{FILL}"/>'
            f'<text x="{LABEL_WIDTH + 2 * PAD + width}" y="{middle}" '
            f'dominant-baseline="middle" fill="{TEXT}">{escape(bar.text)}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every piece of text above is escaped

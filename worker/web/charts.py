"""Server-rendered SVG bar charts of a meter's daily usage: readable with JavaScript off."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal
from html import escape

from billing.core.periods import Period
from billing.reconciliation.explain_format import counted, quantity

WIDTH = 720
HEIGHT = 140
TOP = 18
BOTTOM = 22


def daily_bars(days: Mapping[date, Decimal], span: Period, boundary: date, unit: str) -> str:
    """One bar per UTC day of `span` (`days` maps a day to its total), a dashed line where the
    current period starts, the peak labelled; each bar's title names its day and total."""
    first = span.period_start.date()
    count = max(1, (span.period_end.date() - first).days)
    peak = max(days.values(), default=Decimal(0))
    slot = WIDTH / count
    plot = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="usage-chart" role="img" '
        f'width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">',
        f"<title>{escape(f'daily usage, peak {counted(peak, unit)} a day')}</title>",
        f'<line x1="0" y1="{HEIGHT - BOTTOM}" x2="{WIDTH}" y2="{HEIGHT - BOTTOM}" '
        'stroke="#9aa3b0"/>',
    ]
    for index in range(count):
        day = first + timedelta(days=index)
        value = days.get(day, Decimal(0))
        if not value or not peak:
            continue
        bar = max(1.0, float(value / peak) * plot)  # pixels only: the money stays Decimal
        x = index * slot
        parts.append(
            f'<rect class="bar" x="{x + 1:.1f}" y="{HEIGHT - BOTTOM - bar:.1f}" '
            f'width="{max(1.0, slot - 2):.1f}" height="{bar:.1f}" fill="#4a78c2">'
            f"<title>{day.isoformat()}: {escape(counted(value, unit))}</title></rect>"
        )
    split = (boundary - first).days * slot
    parts.append(
        f'<line x1="{split:.1f}" y1="{TOP - 8}" x2="{split:.1f}" y2="{HEIGHT - BOTTOM}" '
        'stroke="#c24a4a" stroke-dasharray="4 3"/>'
        f'<text x="{split + 4:.1f}" y="{TOP - 2}" font-size="11" fill="#c24a4a">'
        "current period</text>"
        f'<text x="4" y="{TOP - 2}" font-size="11" fill="#333">peak {escape(quantity(peak))}'
        "</text>"
        f'<text x="0" y="{HEIGHT - 6}" font-size="11" fill="#333">{first.isoformat()}</text>'
        f'<text x="{WIDTH}" y="{HEIGHT - 6}" font-size="11" fill="#333" text-anchor="end">'
        f"{(span.period_end.date() - timedelta(days=1)).isoformat()}</text>"
    )
    parts.append("</svg>")
    return "".join(parts)

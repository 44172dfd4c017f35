"""Billing-period arithmetic: adding price intervals to unix timestamps, anchored to a day of month.

Assumption (Stripe's documented behaviour for month ends): monthly and yearly periods keep the
anchor's day of month and clamp to the last day of shorter months (Jan 31 → Feb 28 → Mar 31),
keeping the anchor's time of day.  Days and weeks are fixed 86,400 s / 604,800 s steps (UTC).
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta


def add_interval(anchor: int, interval: str, count: int) -> int:
    """``anchor`` plus ``count`` intervals (``day|week|month|year``), anchored to ``anchor``."""
    if interval == "day":
        return anchor + 86_400 * count
    if interval == "week":
        return anchor + 604_800 * count
    months = count * (12 if interval == "year" else 1)
    start = datetime.fromtimestamp(anchor, tz=UTC)
    month_index = start.month - 1 + months
    year = start.year + month_index // 12
    month = month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    moved = start.replace(year=year, month=month, day=day)
    return int(moved.timestamp())


def floor_window(ts: int, window: str) -> int:
    """Start of the UTC hour or day containing ``ts``."""
    size = 3600 if window == "hour" else 86_400
    return ts - ts % size


def fmt_date(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%d %b %Y")


def days(n: int) -> int:
    return int(timedelta(days=n).total_seconds())

"""Resource-hours (SPEC.md §3): per stack and UTC clock hour, the peak count, from reports alone.

A stack keeps its last reported count until the next report. For each clock hour the count is
the peak at any moment of the hour: the count in effect when the hour starts (a report at
exactly the hour's start replaces the carried count) or any count reported during the hour.
Partial hours therefore count as full hours. The org's resource-hours for a period are the sum
over stacks and over the clock hours whose start lies in the period, so adjacent periods never
count an hour twice and a count reported before the period is carried into it.

The computation walks the reports, not the hours: runs of hours with no report are added as
`count × hours` in one step, so a month of 744 hours costs as much as its reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby

from billing.core.periods import Period, to_unix

HOUR_SECONDS = 3_600


@dataclass(frozen=True)
class ResourceReport:
    """`stack` of an org had `resource_count` resources under management from `at` on."""

    stack: str
    resource_count: int
    at: datetime


def hour_bounds(period: Period) -> tuple[int, int]:
    """Unix seconds of the first hour start at or after each end of `period`.

    The hours counted for the period are those starting in `[start, end)` of this result;
    calendar months are hour-aligned, so for them this is the period itself.
    """
    return _ceil_hour(to_unix(period.period_start)), _ceil_hour(to_unix(period.period_end))


def stack_resource_hours(points: Iterable[tuple[int, int]], start: int, end: int) -> int:
    """Resource-hours of one stack over hours starting in `[start, end)` (hour-aligned Unix s).

    `points` are `(at_unix, resource_count)` sorted by time (ties in arrival order, the last
    wins); points before `start` only set the carried count.
    """
    total = 0
    current = 0
    cursor = start  # the first hour not accounted for yet
    hour = -1  # start of the hour holding the pending peak, -1 when none is pending
    peak = 0
    for at, count in points:
        if at <= start:
            current = count
            continue
        if at >= end:
            break
        report_hour = at - at % HOUR_SECONDS
        if report_hour != hour:
            if hour >= 0:
                total += peak
                cursor = hour + HOUR_SECONDS
            # Whole hours between the last accounted hour and this one held `current`.
            total += current * ((report_hour - cursor) // HOUR_SECONDS)
            hour = report_hour
            # A report at the very start of the hour replaces the carried count for the hour.
            peak = count if at == report_hour else max(current, count)
        else:
            peak = count if at == hour else max(peak, count)
        current = count
    if hour >= 0:
        total += peak
        cursor = hour + HOUR_SECONDS
    return total + current * ((end - cursor) // HOUR_SECONDS)


def resource_hours(reports: Iterable[ResourceReport], period: Period) -> int:
    """An org's resource-hours in `period` from its stacks' reports (any order, any history).

    Reports at the same instant keep their given order: the later one wins.
    """
    start, end = hour_bounds(period)
    ordered = sorted(
        ((report.stack, to_unix(report.at), index, report.resource_count))
        for index, report in enumerate(reports)
    )
    return sum(
        stack_resource_hours(((at, count) for _, at, _, count in rows), start, end)
        for _, rows in groupby(ordered, key=lambda row: row[0])
    )


def resource_hours_by_org(
    rows: Iterable[tuple[str, str, int, int]], period: Period
) -> Iterator[tuple[str, int]]:
    """Stream `(org_id, resource_hours)` from `(org_id, stack, at_unix, resource_count)` rows.

    Rows must arrive grouped by org and stack and sorted by time within a stack (as an
    `ORDER BY org_id, stack, at, id` query returns them); each org is yielded once.
    """
    start, end = hour_bounds(period)
    for org_id, org_rows in groupby(rows, key=lambda row: row[0]):
        hours = sum(
            stack_resource_hours(((at, count) for _, _, at, count in stack_rows), start, end)
            for _, stack_rows in groupby(org_rows, key=lambda row: row[1])
        )
        yield org_id, hours


def _ceil_hour(timestamp: int) -> int:
    return -(-timestamp // HOUR_SECONDS) * HOUR_SECONDS

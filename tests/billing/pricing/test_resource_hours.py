"""Resource-hours (SPEC.md §3): peak per stack per UTC clock hour, carried forward, summed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from billing.core.periods import Period, month_period, to_unix
from billing.pricing.resource_hours import ResourceReport, resource_hours, resource_hours_by_org


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def reports(*rows: tuple[str, int, str]) -> list[ResourceReport]:
    return [ResourceReport(stack, count, at(when)) for stack, count, when in rows]


APRIL = month_period("2026-04")  # 30 days
FEBRUARY = month_period("2026-02")  # 28 days

CASES = [
    # The seed's EKS example: 50 resources for 10 hours, then destroyed.
    (
        "50 resources 00:00-10:00",
        reports(("eks", 50, "2026-04-10T00:00"), ("eks", 0, "2026-04-10T10:00")),
        APRIL,
        500,
    ),
    # Partial hours count as full: 00:30-10:30 touches 11 clock hours.
    (
        "50 resources 00:30-10:30",
        reports(("eks", 50, "2026-04-10T00:30"), ("eks", 0, "2026-04-10T10:30")),
        APRIL,
        550,
    ),
    (
        "200 resources all of a 30-day month",
        reports(("s", 200, "2026-03-20T08:15")),
        APRIL,
        144_000,
    ),
    # Carry-forward across a month boundary: reported in January, still there in February.
    (
        "January count carried into February",
        reports(("s", 10, "2026-01-20T00:00")),
        FEBRUARY,
        6_720,
    ),
    (
        "peak of the hour wins, not the last value",
        reports(
            ("s", 10, "2026-04-01T00:00"),
            ("s", 30, "2026-04-01T00:20"),
            ("s", 5, "2026-04-01T00:40"),
            ("s", 0, "2026-04-01T01:00"),
        ),
        APRIL,
        30,
    ),
    (
        "a report at the hour start replaces the carried count for that hour",
        reports(
            ("s", 100, "2026-04-01T00:00"),
            ("s", 1, "2026-04-01T01:00"),
            ("s", 0, "2026-04-01T02:00"),
        ),
        APRIL,
        101,
    ),
    (
        "destroyed before the period: nothing",
        reports(("s", 100, "2026-03-01T00:00"), ("s", 0, "2026-03-31T23:59:59")),
        APRIL,
        0,
    ),
    (
        "stacks are summed; reports after the period are ignored",
        reports(
            ("a", 50, "2026-04-10T00:00"),
            ("a", 0, "2026-04-10T10:00"),
            ("b", 7, "2026-04-30T22:10"),  # hours 22 and 23 of the last day
            ("b", 1_000, "2026-05-01T00:00"),
        ),
        APRIL,
        514,
    ),
    (
        "the last hour of the month belongs to it, the next report to May",
        reports(("s", 3, "2026-04-30T23:59:59"), ("s", 0, "2026-05-01T00:00:01")),
        APRIL,
        3,
    ),
]


@pytest.mark.parametrize(
    ("case", "rows", "period", "expected"), CASES, ids=[case[0] for case in CASES]
)
def test_resource_hours(
    case: str, rows: list[ResourceReport], period: Period, expected: int
) -> None:
    assert resource_hours(rows, period) == expected
    # The order reports arrive in does not matter (distinct instants).
    assert resource_hours(list(reversed(rows)), period) == expected


def test_carry_forward_does_not_count_an_hour_twice_across_months() -> None:
    rows = reports(("s", 4, "2026-03-31T23:30"), ("s", 0, "2026-04-01T00:30"))
    # March gets its last hour (4); April's first hour starts at 4 and drops at 00:30 (4).
    assert resource_hours(rows, month_period("2026-03")) == 4
    assert resource_hours(rows, APRIL) == 4


def test_resource_hours_by_org_streams_sorted_rows() -> None:
    rows = [
        ("org_a", "eks", to_unix(at("2026-04-10T00:00")), 50),
        ("org_a", "eks", to_unix(at("2026-04-10T10:00")), 0),
        ("org_a", "vpc", to_unix(at("2026-03-01T00:00")), 1),
        ("org_b", "s", to_unix(at("2026-04-10T00:30")), 50),
        ("org_b", "s", to_unix(at("2026-04-10T10:30")), 0),
    ]
    assert dict(resource_hours_by_org(rows, APRIL)) == {"org_a": 500 + 720, "org_b": 550}

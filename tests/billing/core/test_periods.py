"""Periods: calendar months, clamped renewals, leap years, strict ISO 8601 instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from billing.core.meters import Interval
from billing.core.periods import (
    Period,
    PeriodError,
    add_months,
    from_unix,
    month_period,
    month_period_of,
    parse_instant,
    term_containing,
    term_period,
    to_unix,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "start", "end", "days"),
    [
        ("2026-01", utc(2026, 1, 1), utc(2026, 2, 1), 31),
        ("2026-02", utc(2026, 2, 1), utc(2026, 3, 1), 28),
        ("2024-02", utc(2024, 2, 1), utc(2024, 3, 1), 29),
        ("2026-12", utc(2026, 12, 1), utc(2027, 1, 1), 31),
    ],
)
def test_month_period(text: str, start: datetime, end: datetime, days: int) -> None:
    period = month_period(text)
    assert (period.period_start, period.period_end) == (start, end)
    assert period.seconds == days * 86_400
    assert period.label() == text


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-1", "26-01", "2026/01", "", "x"])
def test_month_period_rejects_malformed(text: str) -> None:
    with pytest.raises(PeriodError):
        month_period(text)


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (utc(2026, 1, 31), 1, utc(2026, 2, 28)),
        (utc(2024, 1, 31), 1, utc(2024, 2, 29)),
        (utc(2026, 1, 31), 2, utc(2026, 3, 31)),
        (utc(2024, 2, 29), 12, utc(2025, 2, 28)),
        (utc(2024, 2, 29), 48, utc(2028, 2, 29)),
        (utc(2026, 11, 30, 9), 3, utc(2027, 2, 28, 9)),
        (utc(2026, 3, 31), -1, utc(2026, 2, 28)),
    ],
)
def test_add_months_clamps_to_month_end(start: datetime, months: int, expected: datetime) -> None:
    assert add_months(start, months) == expected


@pytest.mark.parametrize(
    ("anchor", "interval", "index", "start", "end", "days"),
    [
        (utc(2024, 1, 1), Interval.YEAR, 0, utc(2024, 1, 1), utc(2025, 1, 1), 366),
        (utc(2025, 1, 1), Interval.YEAR, 0, utc(2025, 1, 1), utc(2026, 1, 1), 365),
        # Renewals come from the anchor: 31 Jan -> 28 Feb -> 31 Mar, never drifting to the 28th.
        (utc(2026, 1, 31), Interval.MONTH, 1, utc(2026, 2, 28), utc(2026, 3, 31), 31),
        (utc(2026, 1, 31), Interval.MONTH, 2, utc(2026, 3, 31), utc(2026, 4, 30), 30),
        (utc(2024, 2, 29), Interval.YEAR, 1, utc(2025, 2, 28), utc(2026, 2, 28), 365),
    ],
)
def test_term_period(
    anchor: datetime, interval: Interval, index: int, start: datetime, end: datetime, days: int
) -> None:
    term = term_period(anchor, interval, index)
    assert term == Period(start, end)
    assert term.seconds == days * 86_400


def test_term_containing_finds_the_renewed_term() -> None:
    anchor = utc(2026, 1, 15, 9)
    assert term_containing(anchor, Interval.YEAR, utc(2027, 1, 15, 8, 59)) == Period(
        anchor, utc(2027, 1, 15, 9)
    )
    assert term_containing(anchor, Interval.YEAR, utc(2027, 1, 15, 9)) == Period(
        utc(2027, 1, 15, 9), utc(2028, 1, 15, 9)
    )
    assert term_containing(anchor, Interval.MONTH, utc(2026, 3, 1)) == Period(
        utc(2026, 2, 15, 9), utc(2026, 3, 15, 9)
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31T23:30:00Z", utc(2026, 1, 31, 23, 30)),
        ("2026-02-01T01:30:00+02:00", utc(2026, 1, 31, 23, 30)),
        ("2026-01-31T18:30:00-05:00", utc(2026, 1, 31, 23, 30)),
    ],
)
def test_parse_instant_converts_to_utc(text: str, expected: datetime) -> None:
    at = parse_instant(text)
    assert at == expected
    assert at.tzinfo is UTC
    assert month_period_of(at) == month_period("2026-01")


@pytest.mark.parametrize("text", ["2026-01-31T23:30:00", "2026-01-31", "yesterday", ""])
def test_parse_instant_rejects_naive_or_garbage(text: str) -> None:
    with pytest.raises(PeriodError):
        parse_instant(text)


def test_unix_round_trip() -> None:
    at = utc(2026, 2, 3, 10, 0, 7)
    assert to_unix(at) == 1_770_112_807
    assert from_unix(to_unix(at)) == at
    assert to_unix(at.astimezone(timezone(timedelta(hours=5)))) == 1_770_112_807


def test_period_rejects_naive_and_empty() -> None:
    with pytest.raises(PeriodError):
        Period(datetime(2026, 1, 1), utc(2026, 2, 1))
    with pytest.raises(PeriodError):
        Period(utc(2026, 2, 1), utc(2026, 2, 1))


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00", "0001-01-01T00:59:59+01:00"]
)
def test_parse_instant_refuses_instants_a_utc_datetime_cannot_hold(text: str) -> None:
    with pytest.raises(PeriodError, match="is outside the years 1 to 9999 in UTC"):
        parse_instant(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0001-01-01T01:00:00+01:00", utc(1, 1, 1)),
        ("9999-12-31T22:30:00-01:00", utc(9999, 12, 31, 23, 30)),
    ],
)
def test_parse_instant_takes_the_first_and_last_hours_utc_can_hold(
    text: str, expected: datetime
) -> None:
    assert parse_instant(text) == expected

"""Billing periods: half-open UTC intervals, calendar months, renewing terms and instant parsing."""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from billing.core.meters import Interval

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PeriodError(ValueError):
    """A period or instant could not be parsed or is not a valid UTC range."""


@dataclass(frozen=True, order=True)
class Period:
    """A half-open interval `[period_start, period_end)` of timezone-aware UTC instants."""

    period_start: datetime
    period_end: datetime

    def __post_init__(self) -> None:
        require_aware(self.period_start, "period_start")
        require_aware(self.period_end, "period_end")
        if self.period_end <= self.period_start:
            raise PeriodError(
                f"period_end {self.period_end.isoformat()} must be after "
                f"period_start {self.period_start.isoformat()}"
            )

    def __contains__(self, at: object) -> bool:
        return isinstance(at, datetime) and self.period_start <= at < self.period_end

    @property
    def seconds(self) -> int:
        """Length in whole seconds (terms and months are always whole seconds long)."""
        return to_unix(self.period_end) - to_unix(self.period_start)

    def overlaps(self, other: Period) -> bool:
        return self.period_start < other.period_end and other.period_start < self.period_end

    def label(self) -> str:
        """`2026-02` for a calendar month, else `start/end` in ISO 8601."""
        start = self.period_start
        if self == month_period_of(start) and start.day == 1 and start.hour == 0:
            return f"{start.year:04d}-{start.month:02d}"
        return f"{self.period_start.isoformat()}/{self.period_end.isoformat()}"


# --------------------------------------------------------------------------- instants


def require_aware(at: datetime, name: str = "datetime") -> datetime:
    """Return `at` converted to UTC; raise PeriodError when it is naive."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise PeriodError(f"{name} {at.isoformat()} has no timezone (naive); give an offset or Z")
    return at.astimezone(UTC)


def parse_instant(text: str) -> datetime:
    """Parse ISO 8601 with an explicit offset (`Z` or `+hh:mm`) into a UTC datetime.

    Naive timestamps are refused: an event's hour (and so its month) depends on the offset.
    """
    if not isinstance(text, str) or not text:
        raise PeriodError("must be an ISO 8601 timestamp string such as 2026-01-31T23:00:00Z")
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise PeriodError(f"{text!r} is not an ISO 8601 timestamp") from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise PeriodError(f"{text!r} has no timezone offset (naive); add Z or +00:00")
    try:
        return at.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is in year 0 in UTC
        raise PeriodError(f"{text!r} is outside the years 1 to 9999 in UTC") from None


def to_unix(at: datetime) -> int:
    """Whole seconds since the Unix epoch (sub-second parts are truncated toward the past)."""
    delta = require_aware(at) - _EPOCH
    return delta.days * 86_400 + delta.seconds


def from_unix(timestamp: int) -> datetime:
    return _EPOCH + timedelta(seconds=timestamp)


def isoformat_z(at: datetime) -> str:
    """`2026-01-31T23:00:00Z`: the UTC instant as written in events and JSON output."""
    return require_aware(at).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------- calendar


def add_months(at: datetime, months: int) -> datetime:
    """`at` moved by `months` calendar months, the day clamped to the target month's last day."""
    index = at.year * 12 + (at.month - 1) + months
    year, month = divmod(index, 12)
    day = min(at.day, calendar.monthrange(year, month + 1)[1])
    return at.replace(year=year, month=month + 1, day=day)


def add_years(at: datetime, years: int) -> datetime:
    """`at` moved by `years`; 29 February becomes 28 February in a common year."""
    return add_months(at, 12 * years)


def interval_months(interval: Interval) -> int:
    return 12 if interval is Interval.YEAR else 1


def month_period(text: str) -> Period:
    """The calendar month `YYYY-MM` in UTC."""
    match = _MONTH_RE.match(text.strip()) if isinstance(text, str) else None
    if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1970:
        raise PeriodError(f"period {text!r} must be a month written YYYY-MM, e.g. 2026-02")
    start = datetime(int(match.group(1)), int(match.group(2)), 1, tzinfo=UTC)
    return Period(start, add_months(start, 1))


def month_period_of(at: datetime) -> Period:
    """The calendar month (UTC) containing `at`."""
    at = require_aware(at)
    start = datetime(at.year, at.month, 1, tzinfo=UTC)
    return Period(start, add_months(start, 1))


# --------------------------------------------------------------------------- terms


def term_period(term_start_at: datetime, interval: Interval, index: int) -> Period:
    """The `index`-th term (0 = the first) of a subscription renewing every `interval`.

    Each renewal is computed from the original anchor, never from the previous renewal, so a
    term started on 31 January renews on 28/29 February and then on 31 March again.
    """
    step = interval_months(interval)
    start = add_months(term_start_at, step * index)
    return Period(start, add_months(term_start_at, step * (index + 1)))


def term_containing(term_start_at: datetime, interval: Interval, at: datetime) -> Period:
    """The term of the subscription anchored at `term_start_at` that contains `at`."""
    if at < term_start_at:
        raise PeriodError(f"{at.isoformat()} is before the term start {term_start_at.isoformat()}")
    step = interval_months(interval)
    index = ((at.year - term_start_at.year) * 12 + at.month - term_start_at.month) // step
    index = max(0, index - 1)
    while True:
        term = term_period(term_start_at, interval, index)
        if at < term.period_end:
            return term
        index += 1


def term_periods(
    term_start_at: datetime, interval: Interval, until_at: datetime
) -> Iterator[Period]:
    """Every term of the subscription that starts before `until_at`, in order."""
    index = 0
    while True:
        term = term_period(term_start_at, interval, index)
        if term.period_start >= until_at:
            return
        yield term
        index += 1

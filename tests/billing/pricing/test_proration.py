"""Seat policy: prorated increases, high-water mark until renewal, 5-minute coalescing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from billing.core.meters import Interval
from billing.core.periods import Period
from billing.pricing.book import SeatDecrease, SeatIncrease, SeatPolicy
from billing.pricing.proration import (
    SeatChange,
    billed_quantity,
    prorated_amount,
    seat_terms,
    term_seat_steps,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


YEAR_2026 = Period(utc(2026, 1, 1), utc(2027, 1, 1))  # 365 days
YEAR_2024 = Period(utc(2024, 1, 1), utc(2025, 1, 1))  # 366 days (leap)


@pytest.mark.parametrize(
    ("delta", "unit", "term", "at", "amount"),
    [
        (1, 900, YEAR_2026, utc(2026, 1, 1), 900),  # whole term
        (1, 900, YEAR_2026, utc(2026, 7, 2, 12), 450),  # 182.5 of 365 days
        (10, 900, YEAR_2026, utc(2026, 12, 31), 25),  # 1 day: 24.66 -> 25
        # Leap-year term: 183 of 366 days is exactly half; the same date in 2025 is not.
        (1, 900, YEAR_2024, utc(2024, 7, 2), 450),
        (1, 900, Period(utc(2025, 1, 1), utc(2026, 1, 1)), utc(2025, 7, 2), 451),  # 451.23
        # Half-cent rounding, half up: 17,520 s left of 31,536,000 is 0.5 cent per seat.
        (1, 900, YEAR_2026, utc(2027, 1, 1) - timedelta(seconds=17_520), 1),
        (3, 900, YEAR_2026, utc(2027, 1, 1) - timedelta(seconds=17_520), 2),  # 1.5 -> 2
        (-1, 900, YEAR_2026, utc(2027, 1, 1) - timedelta(seconds=17_520), -1),  # symmetric
        (2, 900, YEAR_2026, utc(2027, 1, 1) - timedelta(seconds=17_519), 1),  # 0.99994 -> 1
    ],
)
def test_prorated_amount(delta: int, unit: int, term: Period, at: datetime, amount: int) -> None:
    assert prorated_amount(delta, unit, term, at) == amount


def test_prorated_amount_outside_the_term_is_refused() -> None:
    with pytest.raises(ValueError, match="outside the term"):
        prorated_amount(1, 900, YEAR_2026, utc(2027, 1, 1))


def steps_of(changes: list[SeatChange], opening: int = 10, policy: SeatPolicy | None = None):
    return [
        (step.window_start, step.proration_at, step.from_quantity, step.to_quantity, step.amount)
        for step in term_seat_steps(YEAR_2026, opening, 900, changes, policy=policy)
    ]


def test_decrease_then_increase_is_charged_only_above_the_high_water_mark() -> None:
    changes = [SeatChange(utc(2026, 3, 1), 5), SeatChange(utc(2026, 7, 2, 12), 12)]
    # 10 -> 5 keeps billing 10 until renewal; 5 -> 12 charges 2 seats for 182.5 days.
    assert steps_of(changes) == [
        (utc(2026, 7, 2, 12), utc(2026, 7, 2, 12), 10, 12, 900),
    ]


def test_changes_in_one_window_make_one_step_from_the_first_change_reaching_the_peak() -> None:
    changes = [
        SeatChange(utc(2026, 7, 2, 12, 0, 30), 11),
        SeatChange(utc(2026, 7, 2, 12, 1), 13),
        SeatChange(utc(2026, 7, 2, 12, 2), 12),
        SeatChange(utc(2026, 7, 2, 12, 4, 59), 13),  # equal to the peak again: not the instant
        SeatChange(utc(2026, 7, 2, 12, 5, 10), 13),  # next window, not above the HWM: nothing
        SeatChange(utc(2026, 7, 2, 12, 6), 14),
    ]
    # 3 seats from 12:01 for 15,767,940 s of 31,536,000: 1349.995 -> 1350;
    # 1 seat from 12:06 for 15,767,640 s: 449.99 -> 450.
    assert steps_of(changes) == [
        (utc(2026, 7, 2, 12), utc(2026, 7, 2, 12, 1), 10, 13, 1350),
        (utc(2026, 7, 2, 12, 5), utc(2026, 7, 2, 12, 6), 13, 14, 450),
    ]


def test_other_book_policies() -> None:
    changes = [SeatChange(utc(2026, 7, 2, 12), 12), SeatChange(utc(2026, 7, 2, 12, 10), 8)]
    next_term = SeatPolicy(increase=SeatIncrease.NEXT_TERM)
    assert steps_of(changes, policy=next_term) == [
        (utc(2026, 7, 2, 12), utc(2026, 7, 2, 12), 10, 12, 0)
    ]
    immediate = SeatPolicy(decrease=SeatDecrease.IMMEDIATE)
    assert steps_of(changes, policy=immediate) == [
        (utc(2026, 7, 2, 12), utc(2026, 7, 2, 12), 10, 12, 900),
        (utc(2026, 7, 2, 12, 10), utc(2026, 7, 2, 12, 10), 12, 8, -1800),
    ]


def test_renewal_quantity_is_the_count_at_renewal_and_the_hwm_resets() -> None:
    anchor = utc(2026, 1, 15, 9)
    changes = [
        SeatChange(anchor, 10),
        SeatChange(utc(2026, 6, 1), 4),
        SeatChange(utc(2026, 9, 1), 6),  # still below the HWM of 10: free
        SeatChange(utc(2027, 3, 1), 8),  # above the renewal quantity of 6: charged
    ]
    terms = seat_terms(anchor, Interval.YEAR, 900, changes, until_at=utc(2028, 1, 1))
    assert [(t.period.period_start, t.seat_count, t.upfront_amount) for t in terms] == [
        (anchor, 10, 9000),
        (utc(2027, 1, 15, 9), 6, 5400),
    ]
    assert terms[0].steps == ()
    (step,) = terms[1].steps
    assert (step.from_quantity, step.to_quantity, step.proration_at) == (6, 8, utc(2027, 3, 1))
    assert step.amount == 1_580  # 2 × 900 × 27,680,400 / 31,536,000 = 1579.93
    assert billed_quantity(terms, utc(2026, 6, 2)) == 10
    assert billed_quantity(terms, utc(2027, 1, 15, 9)) == 6
    assert billed_quantity(terms, utc(2027, 3, 1)) == 8
    assert billed_quantity(terms, utc(2026, 1, 1)) == 0


def test_a_plan_change_cuts_the_term_chain() -> None:
    anchor = utc(2026, 1, 1)
    changes = [SeatChange(anchor, 10), SeatChange(utc(2026, 6, 1), 20)]
    terms = seat_terms(
        anchor, Interval.YEAR, 900, changes, until_at=utc(2030, 1, 1), ends_at=utc(2026, 5, 1)
    )
    assert len(terms) == 1
    assert terms[0].steps == ()
    assert terms[0].ends_at == utc(2026, 5, 1)
    assert billed_quantity(terms, utc(2026, 5, 2)) == 0

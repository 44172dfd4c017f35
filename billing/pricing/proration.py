"""Seat policy over a subscription's terms: renewal quantities, coalesced seat steps, prorations.

Rules (SPEC.md §4, the book's `[seat_policy]`):

- A term renews every interval from the term start (billing.core.periods.term_period: the anchor
  day is clamped to the month's last day; a term spanning 29 February is 366 days). The term's
  upfront quantity is the seat count in effect at its start — for a renewal, the count at the
  renewal instant, so decreases made during the previous term take effect there.
- `prorate` increases are charged for the rest of the term, to the second:
  `round_line_amount(Δ × seat_unit_amount × (term_end − t) / (term_end − term_start))`.
- `at_renewal` decreases: until the renewal the billed quantity stays at the term's high-water
  mark (HWM), so a later increase is charged only above it.

Coalescing (a decision; Stripe allows 200 quantity updates per subscription per hour): seat
changes are grouped into fixed windows of SEAT_SYNC_WINDOW_SECONDS aligned to the Unix epoch.
Per window the new HWM is max(previous HWM, max count in the window). If it rose, exactly one
step is due, prorated from the `at` of the first change in that window that reached the new
HWM. The seat sync pushes one Stripe quantity update per step with `proration_date` =
`proration_at`, so the expected invoice and Stripe agree to the cent.

Other book policies: with `next_term` increases the steps still raise the quantity but carry
no amount (added seats are first paid at renewal); with `immediate` decreases the quantity
follows the last count of each window, credits included, prorated from that last change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from billing.core.meters import Interval
from billing.core.money import round_line_amount
from billing.core.periods import Period, from_unix, term_periods, to_unix
from billing.pricing.book import SeatDecrease, SeatIncrease, SeatPolicy

SEAT_SYNC_WINDOW_SECONDS = 300


@dataclass(frozen=True)
class SeatChange:
    """An entry of the seat ledger: the org has `seat_count` seats from `at` on."""

    at: datetime
    seat_count: int


@dataclass(frozen=True)
class SeatStep:
    """One coalesced quantity change inside a term, and what it is charged (cents)."""

    window_start: datetime
    proration_at: datetime
    from_quantity: int
    to_quantity: int
    amount: int
    period_start: datetime  # the term the step belongs to
    period_end: datetime


@dataclass(frozen=True)
class SeatTerm:
    """One term: the upfront quantity at its start and the steps during it."""

    period: Period
    seat_count: int
    seat_unit_amount: int
    steps: tuple[SeatStep, ...]
    ends_at: datetime  # period_end, or earlier when a plan change cut the term short

    @property
    def upfront_amount(self) -> int:
        return round_line_amount(Decimal(self.seat_count) * Decimal(self.seat_unit_amount))

    def billed_quantity(self, at: datetime) -> int:
        """The quantity Stripe bills at `at` (steps apply from their `proration_at`)."""
        quantity = self.seat_count
        for step in self.steps:
            if step.proration_at > at:
                break
            quantity = step.to_quantity
        return quantity


def prorated_amount(quantity_delta: int, seat_unit_amount: int, term: Period, at: datetime) -> int:
    """Charge (or credit, when negative) of `quantity_delta` seats from `at` to the term end."""
    if at not in term:
        raise ValueError(f"{at.isoformat()} is outside the term {term.label()}")
    remaining = to_unix(term.period_end) - to_unix(at)
    exact = (Decimal(quantity_delta) * Decimal(seat_unit_amount) * Decimal(remaining)) / Decimal(
        term.seconds
    )
    return round_line_amount(exact)


def window_start_of(at: datetime) -> datetime:
    """Start of the epoch-aligned coalescing window containing `at`."""
    timestamp = to_unix(at)
    return from_unix(timestamp - timestamp % SEAT_SYNC_WINDOW_SECONDS)


def seat_count_at(changes: Sequence[SeatChange], at: datetime, default: int = 0) -> int:
    """The seat count in effect at `at`: the last change at or before it (`changes` in order)."""
    count = default
    for change in changes:
        if change.at > at:
            break
        count = change.seat_count
    return count


def term_seat_steps(
    term: Period,
    opening_count: int,
    seat_unit_amount: int,
    changes: Iterable[SeatChange],
    *,
    policy: SeatPolicy | None = None,
    ends_at: datetime | None = None,
) -> tuple[SeatStep, ...]:
    """The coalesced steps of one term from the seat changes strictly inside it.

    `changes` are in ledger order (by `at`, ties in arrival order); changes outside
    `(period_start, min(period_end, ends_at))` are ignored.
    """
    policy = policy or SeatPolicy()
    stop = min(term.period_end, ends_at) if ends_at else term.period_end
    windows: dict[int, list[SeatChange]] = {}
    for change in changes:
        if term.period_start < change.at < stop:
            timestamp = to_unix(change.at)
            windows.setdefault(timestamp - timestamp % SEAT_SYNC_WINDOW_SECONDS, []).append(change)
    steps: list[SeatStep] = []
    quantity = opening_count
    for window, window_changes in sorted(windows.items()):
        if policy.decrease is SeatDecrease.IMMEDIATE:
            target = window_changes[-1].seat_count
            proration_at = window_changes[-1].at
        else:
            target = max(quantity, *(change.seat_count for change in window_changes))
            proration_at = next(
                (change.at for change in window_changes if change.seat_count == target),
                window_changes[0].at,
            )
        if target == quantity:
            continue
        charged = policy.increase is SeatIncrease.PRORATE or target < quantity
        amount = (
            prorated_amount(target - quantity, seat_unit_amount, term, proration_at)
            if charged
            else 0
        )
        steps.append(
            SeatStep(
                window_start=from_unix(window),
                proration_at=proration_at,
                from_quantity=quantity,
                to_quantity=target,
                amount=amount,
                period_start=term.period_start,
                period_end=term.period_end,
            )
        )
        quantity = target
    return tuple(steps)


def seat_terms(
    term_start_at: datetime,
    interval: Interval,
    seat_unit_amount: int,
    changes: Sequence[SeatChange],
    *,
    until_at: datetime,
    ends_at: datetime | None = None,
    from_at: datetime | None = None,
    policy: SeatPolicy | None = None,
) -> tuple[SeatTerm, ...]:
    """Every term starting before `until_at` (and before `ends_at`, when a plan change ends the
    subscription's term chain), with its upfront quantity and its seat steps.

    A term cut short by `ends_at` keeps its natural length for proration (no credit for the
    unused remainder: a plan change starts a new term with its own upfront charge). Terms that
    end at or before `from_at` are left out (a term's quantities never depend on earlier terms).
    """
    limit = min(until_at, ends_at) if ends_at else until_at
    result: list[SeatTerm] = []
    for term in term_periods(term_start_at, interval, limit):
        if from_at is not None and term.period_end <= from_at:
            continue
        opening = seat_count_at(changes, term.period_start)
        steps = term_seat_steps(
            term, opening, seat_unit_amount, changes, policy=policy, ends_at=ends_at
        )
        stop = min(term.period_end, ends_at) if ends_at else term.period_end
        result.append(SeatTerm(term, opening, seat_unit_amount, steps, stop))
    return tuple(result)


def billed_quantity(terms: Sequence[SeatTerm], at: datetime) -> int:
    """The seat quantity billed at `at` under the schedule `terms` (0 outside every term)."""
    for term in terms:
        if term.period.period_start <= at < term.ends_at:
            return term.billed_quantity(at)
    return 0

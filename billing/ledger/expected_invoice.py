"""The expected invoice of an org's monthly period, computed from the ledger and the price book.

Lines, in order: the upfront `seats` charge of every seat term that begins in the period (the
full term price for the seat count at the term start or renewal), one `seat_proration` line per
coalesced seat step whose `proration_at` is in the period (billing.pricing.proration), then one
line per meter of the terms in effect at the end of the period, and the `minimum` top-up
computed on those usage lines only (billing.pricing.charge), then the `credit` the org's grants
pay of that usage charge (billing.pricing.credits; a negative line, left out when nothing is
paid). Seat lines with a zero amount are left out.

Nothing here reads the database or Stripe, or the clock (an import-linter contract keeps it so).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from billing.core.components import CREDIT, SEAT_CREDIT, SEAT_PRORATION, SEATS
from billing.core.meters import Interval, Meter
from billing.core.periods import Period
from billing.pricing.book import Terms
from billing.pricing.charge import ChargeLine, usage_lines
from billing.pricing.credits import GrantBalance, allocate_credits, credit_total, describe_shares
from billing.pricing.lifecycle import NO_PLAN, CancelCredit, unused_seat_credit
from billing.pricing.proration import SeatChange, SeatStep, SeatTerm, seat_terms


class TermsSource(Protocol):
    """Resolves an org's terms on a book's plan (billing.pricing.book_cache.BookCache does)."""

    def terms(self, book_name: str, plan: str, interval: str | None, org_id: str) -> Terms: ...


class UnknownOrgError(LookupError):
    """The org is not in the ledger, or had no subscription before the period ended."""


@dataclass(frozen=True)
class ExpectedLine:
    """One expected invoice line; `amount` in minor units, the other fields explain it."""

    code: str  # "seats", "seat_proration", a meter code, "minimum" or "credit"
    quantity: Decimal
    amount: int
    included: Decimal = Decimal(0)
    billable: Decimal = Decimal(0)
    unit_amount_decimal: Decimal = Decimal(0)
    per: int = 1
    period_start: datetime | None = None  # seat lines: the term, or [proration_at, term end)
    period_end: datetime | None = None
    proration_at: datetime | None = None
    from_quantity: int | None = None
    to_quantity: int | None = None
    description: str = ""


@dataclass(frozen=True)
class ExpectedInvoice:
    org_id: str
    period: Period
    currency: str
    book: str
    plan: str
    interval: Interval
    lines: tuple[ExpectedLine, ...]

    @property
    def total_amount(self) -> int:
        return sum(line.amount for line in self.lines)

    def line(self, code: str) -> ExpectedLine | None:
        return next((line for line in self.lines if line.code == code), None)


@dataclass(frozen=True)
class PlanSegment:
    """From `at` on (until the next segment) the org is on this book, plan and interval; with
    `plan` NO_PLAN it has no subscription (canceled), and `cancel_credit` says whether the
    term this ends early is credited."""

    at: datetime
    book: str
    plan: str
    interval: str
    cancel_credit: str | None = None

    @property
    def credits_unused_seats(self) -> bool:
        return self.cancel_credit != CancelCredit.NONE.value


@dataclass(frozen=True)
class OrgLedger:
    """What the computation needs of one org for one period (plain values, no database)."""

    org_id: str
    plan_segments: Sequence[PlanSegment]  # ordered by `at`
    seat_changes: Sequence[SeatChange] = ()  # ledger order, at < period end
    usage: Mapping[Meter, Decimal] = field(default_factory=dict)  # totals in the period
    resource_hours: int = 0
    credits: Sequence[GrantBalance] = ()  # grants made before the period ended, balances before it


def compute_expected_invoice(
    ledger: OrgLedger, period: Period, books: TermsSource
) -> ExpectedInvoice | None:
    """The expected invoice for `period`, or None when the org had no plan before it ended."""
    segments = [seg for seg in ledger.plan_segments if seg.at < period.period_end]
    if not segments:
        return None
    current = segments[-1]
    if current.plan == NO_PLAN:
        return None  # canceled before the period began: there is nothing to invoice
    terms = books.terms(current.book, current.plan, current.interval, ledger.org_id)
    lines = list(_seat_lines(ledger, period, books))
    usage = dict(ledger.usage)
    if Meter.IAC_RESOURCE_HOURS in terms.meters:
        usage[Meter.IAC_RESOURCE_HOURS] = Decimal(ledger.resource_hours)
    charged = usage_lines(terms, usage)
    lines.extend(_from_charge_line(line) for line in charged)
    charge_amount = sum(line.amount for line in charged)
    shares = allocate_credits(ledger.credits, period, charge_amount)
    if shares:
        lines.append(
            ExpectedLine(
                code=CREDIT,
                quantity=Decimal(1),
                amount=-credit_total(shares),
                description=describe_shares(shares, charge_amount),
            )
        )
    return ExpectedInvoice(
        org_id=ledger.org_id,
        period=period,
        currency=terms.currency,
        book=current.book,  # as the ledger names it (a name or a path), for BookCache
        plan=terms.plan,
        interval=terms.interval,
        lines=tuple(lines),
    )


def _seat_lines(ledger: OrgLedger, period: Period, books: TermsSource) -> Iterator[ExpectedLine]:
    every = ledger.plan_segments
    for index, segment in enumerate(every):
        following = every[index + 1] if index + 1 < len(every) else None
        ends_at = following.at if following is not None else None
        if segment.plan == NO_PLAN or segment.at >= period.period_end:
            continue
        if ends_at is not None and ends_at < period.period_start:
            continue
        terms = books.terms(segment.book, segment.plan, segment.interval, ledger.org_id)
        if not terms.seat_unit_amount:
            continue
        schedule = seat_terms(
            segment.at,
            terms.interval,
            terms.seat_unit_amount,
            ledger.seat_changes,
            until_at=period.period_end,
            ends_at=ends_at,
            from_at=period.period_start,
            policy=terms.seat_policy,
        )
        for term in schedule:
            if term.period.period_start in period and term.upfront_amount:
                yield _upfront_line(term, terms)
            for step in term.steps:
                if step.proration_at in period and step.amount:
                    yield _proration_line(step, terms)
        if following is not None and following.credits_unused_seats and schedule:
            credit = _credit_line(schedule[-1], following.at, terms)
            # On the invoice of the period the change ends (the old subscription's last).
            if credit is not None and period.period_start < following.at <= period.period_end:
                yield credit


def _upfront_line(term: SeatTerm, terms: Terms) -> ExpectedLine:
    count = Decimal(term.seat_count)
    return ExpectedLine(
        code=SEATS,
        quantity=count,
        amount=term.upfront_amount,
        billable=count,
        unit_amount_decimal=Decimal(term.seat_unit_amount),
        period_start=term.period.period_start,
        period_end=term.period.period_end,
        description=f"{term.seat_count} seat(s) × {term.seat_unit_amount} per {terms.interval}",
    )


def _proration_line(step: SeatStep, terms: Terms) -> ExpectedLine:
    delta = Decimal(step.to_quantity - step.from_quantity)
    return ExpectedLine(
        code=SEAT_PRORATION,
        quantity=delta,
        amount=step.amount,
        billable=delta,
        unit_amount_decimal=Decimal(terms.seat_unit_amount or 0),
        period_start=step.proration_at,
        period_end=step.period_end,
        proration_at=step.proration_at,
        from_quantity=step.from_quantity,
        to_quantity=step.to_quantity,
        description=(
            f"seats {step.from_quantity} → {step.to_quantity} from "
            f"{step.proration_at.isoformat()} to the term end {step.period_end.isoformat()}"
        ),
    )


def _credit_line(term: SeatTerm, ends_at: datetime, terms: Terms) -> ExpectedLine | None:
    """The credit for the prepaid seat time of `term` after `ends_at` (SPEC §10)."""
    if not term.period.period_start <= ends_at < term.period.period_end:
        return None
    quantity = term.billed_quantity(ends_at)
    amount = unused_seat_credit(term.seat_unit_amount, quantity, term.period, ends_at)
    if not amount:
        return None
    return ExpectedLine(
        code=SEAT_CREDIT,
        quantity=Decimal(quantity),
        amount=amount,
        billable=Decimal(quantity),
        unit_amount_decimal=Decimal(term.seat_unit_amount),
        period_start=ends_at,
        period_end=term.period.period_end,
        proration_at=ends_at,
        description=(
            f"unused time of {quantity} seat(s) × {term.seat_unit_amount} per {terms.interval} "
            f"from {ends_at.isoformat()} to the term end {term.period.period_end.isoformat()}"
        ),
    )


def _from_charge_line(line: ChargeLine) -> ExpectedLine:
    return ExpectedLine(
        code=line.code,
        quantity=line.quantity,
        amount=line.amount,
        included=line.included,
        billable=line.billable,
        unit_amount_decimal=line.unit_amount_decimal,
        per=line.per,
        description=line.description,
    )

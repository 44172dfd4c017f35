"""Reconciliation matching (pure): a Stripe invoice's lines compared with the expected lines.

Stripe lines are sorted into components: `seats` (the seat price's non-proration lines),
`seat_proration` (the seat item's proration lines, credit and debit summed), one per meter
(lines whose price is the org's metered price for it), `minimum` and `adjustment` (invoice items
tagged with `billing_kind`), and everything else `unexpected_in_stripe`, line by line. Each
component gets a verdict and a trace explaining both sides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from billing.core.components import (
    BILLING_KIND,
    MINIMUM,
    SEAT_PRORATION,
    SEATS,
    BillingKind,
)
from billing.core.money import format_decimal
from billing.core.periods import isoformat_z
from billing.ledger.expected_invoice import ExpectedLine
from billing.pricing.book import Terms
from billing.pricing.charge import meter_value, price_meter
from billing.stripe_gateway.records import StripeInvoice, StripeInvoiceLine


class Status(StrEnum):
    """A line's (and, as the worst of its lines, an invoice's) verdict, best first."""

    MATCHED = "matched"
    ROUNDING = "rounding"  # within a cent per line: Stripe rounds proration halves apart
    MISMATCHED = "mismatched"
    MISSING_IN_STRIPE = "missing_in_stripe"
    UNEXPECTED_IN_STRIPE = "unexpected_in_stripe"
    ERROR = "error"  # the invoice could not be reconciled (unknown customer, no ledger)


ADJUSTMENT = "adjustment"
UNEXPECTED = "unexpected"
ROUNDING_TOLERANCE = 1  # cents per independently rounded Stripe line pair

# Worst last: an invoice takes the worst status of its lines.
SEVERITY: Mapping[Status, int] = {
    Status.MATCHED: 0,
    Status.ROUNDING: 1,
    Status.MISMATCHED: 2,
    Status.MISSING_IN_STRIPE: 3,
    Status.UNEXPECTED_IN_STRIPE: 4,
    Status.ERROR: 5,
}


@dataclass(frozen=True)
class ComponentMap:
    """How Stripe ids map to components for one org (from the catalog and the org's items)."""

    seat_price_ids: frozenset[str] = frozenset()
    seat_item_ids: frozenset[str] = frozenset()
    meter_by_price_id: Mapping[str, str] = field(default_factory=dict)

    def component_of(self, line: StripeInvoiceLine) -> str:
        kind = line.metadata.get(BILLING_KIND)
        if kind == BillingKind.USAGE_ADJUSTMENT:
            return ADJUSTMENT
        if kind == BillingKind.MINIMUM_COMMITMENT:
            return MINIMUM
        is_seat = (
            line.stripe_price_id in self.seat_price_ids
            or line.stripe_subscription_item_id in self.seat_item_ids
        )
        if is_seat:
            return SEAT_PRORATION if line.proration else SEATS
        if line.stripe_price_id and line.stripe_price_id in self.meter_by_price_id:
            return self.meter_by_price_id[line.stripe_price_id]
        return UNEXPECTED


@dataclass(frozen=True)
class MeterFacts:
    """What the ledger holds for one meter in the period: the first step of a trace."""

    event_count: int
    quantity_total: Decimal
    source: str = "usage events"


@dataclass(frozen=True)
class ExpectedAdjustment:
    """A usage adjustment the worker booked, identified on the invoice by its invoice item."""

    stripe_invoice_item_id: str
    meter: str
    period_start: str
    quantity_delta: Decimal
    amount: int


@dataclass(frozen=True)
class LineComparison:
    component: str
    status: Status
    expected_quantity: Decimal | None
    expected_amount: int | None
    stripe_quantity: Decimal | None
    stripe_amount: int | None
    explanation: str
    trace: Mapping[str, Any]

    @property
    def difference_amount(self) -> int:
        return (self.stripe_amount or 0) - (self.expected_amount or 0)


@dataclass(frozen=True)
class InvoiceComparison:
    lines: tuple[LineComparison, ...]

    @property
    def status(self) -> Status:
        return worst(line.status for line in self.lines)

    @property
    def expected_total_amount(self) -> int:
        return sum(line.expected_amount or 0 for line in self.lines)

    @property
    def stripe_total_amount(self) -> int:
        return sum(line.stripe_amount or 0 for line in self.lines)


def worst(statuses: Iterable[Status]) -> Status:
    return max(statuses, key=lambda s: SEVERITY[s], default=Status.MATCHED)


@dataclass(frozen=True)
class _Expected:
    quantity: Decimal | None
    amount: int
    trace: dict[str, Any]


def compare_invoice(
    invoice: StripeInvoice,
    expected_lines: Sequence[ExpectedLine],
    components: ComponentMap,
    *,
    terms: Terms | None = None,
    meter_facts: Mapping[str, MeterFacts] | None = None,
    adjustments: Sequence[ExpectedAdjustment] = (),
) -> InvoiceComparison:
    """Compare `invoice` with the expected lines that belong on it (chosen by the caller)."""
    facts = meter_facts or {}
    stripe_groups: dict[str, list[StripeInvoiceLine]] = {}
    unexpected: list[StripeInvoiceLine] = []
    for line in invoice.lines:
        component = components.component_of(line)
        if component == UNEXPECTED:
            unexpected.append(line)
        else:
            stripe_groups.setdefault(component, []).append(line)
    expected: dict[str, _Expected] = {}
    for wanted in expected_lines:
        expected[wanted.code] = _merge(
            expected.get(wanted.code), _expected_of(wanted, terms, facts)
        )
    if adjustments:
        expected[ADJUSTMENT] = _expected_adjustments(adjustments)
    order = list(dict.fromkeys([*expected, *stripe_groups]))
    results = [
        _compare(component, expected.get(component), stripe_groups.get(component, []))
        for component in order
    ]
    results.extend(_unexpected(line) for line in unexpected)
    return InvoiceComparison(tuple(results))


# --------------------------------------------------------------------------- expected side


def _expected_of(
    line: ExpectedLine, terms: Terms | None, facts: Mapping[str, MeterFacts]
) -> _Expected:
    trace: dict[str, Any] = {
        "description": line.description,
        "quantity": _num(line.quantity),
        "amount": line.amount,
    }
    quantity: Decimal | None = line.quantity
    if line.code == SEATS:
        trace["steps"] = [
            f"{_num(line.quantity)} seat(s) at the term start × {_num(line.unit_amount_decimal)}¢"
            f" = {line.amount}¢ upfront for the term",
        ]
        trace["term"] = _span(line)
    elif line.code == SEAT_PRORATION:
        trace["prorations"] = [_proration_trace(line)]
    elif line.code == MINIMUM:
        quantity = None
        trace["steps"] = [line.description]
    else:
        trace.update(_meter_trace(line, terms, facts.get(line.code)))
        # Stripe's meter and invoice count in the price's unit (hours of 3,600 seconds).
        quantity = meter_value(line.quantity, line.per)
        if line.per != 1:
            trace["stripe_unit"] = (
                f"{_num(line.quantity)} ledger units ÷ {line.per} = {_num(quantity)} on the invoice"
            )
    return _Expected(quantity, line.amount, trace)


def _merge(first: _Expected | None, second: _Expected) -> _Expected:
    """Several expected lines of one component (two seat steps, say) compared as one sum."""
    if first is None:
        return second
    quantity = (
        None
        if first.quantity is None or second.quantity is None
        else first.quantity + second.quantity
    )
    trace = dict(first.trace)
    trace["prorations"] = [*first.trace.get("prorations", []), *second.trace.get("prorations", [])]
    trace["amount"] = first.amount + second.amount
    return _Expected(quantity, first.amount + second.amount, trace)


def _proration_trace(line: ExpectedLine) -> dict[str, Any]:
    return {
        "from_quantity": line.from_quantity,
        "to_quantity": line.to_quantity,
        "proration_at": isoformat_z(line.proration_at) if line.proration_at else None,
        "term_end_at": isoformat_z(line.period_end) if line.period_end else None,
        "unit_amount_decimal": _num(line.unit_amount_decimal),
        "amount": line.amount,
        "rule": "added seats × seat price × remaining seconds of the term / term seconds, "
        "rounded half up once",
    }


def _meter_trace(
    line: ExpectedLine, terms: Terms | None, facts: MeterFacts | None
) -> dict[str, Any]:
    steps: list[str] = []
    trace: dict[str, Any] = {}
    if facts is not None:
        trace["events"] = {
            "source": facts.source,
            "count": facts.event_count,
            "quantity_total": _num(facts.quantity_total),
        }
        steps.append(f"{facts.event_count} {facts.source} → total {_num(facts.quantity_total)}")
    trace["included"] = _num(line.included)
    trace["billable"] = _num(line.billable)
    steps.append(f"included {_num(line.included)} → billable {_num(line.billable)}")
    price = (
        None
        if terms is None
        else next((p for m, p in terms.meters.items() if m.value == line.code), None)
    )
    if price is not None:
        charge = price_meter(price, line.quantity)
        trace["tiers"] = [
            {
                "up_to": "inf" if use.up_to is None else use.up_to,
                "quantity": _num(use.quantity),
                "unit_amount_decimal": _num(use.unit_amount_decimal),
                "per": price.per,
                "flat_amount": use.flat_amount,
                "exact_amount": _num(use.exact_amount),
            }
            for use in charge.tiers
        ]
        exact = sum((use.exact_amount for use in charge.tiers), Decimal(0))
        for use in charge.tiers:
            per = f" per {price.per}" if price.per != 1 else ""
            steps.append(
                f"tier ≤{'inf' if use.up_to is None else use.up_to}: {_num(use.quantity)} × "
                f"{_num(use.unit_amount_decimal)}¢{per} = {_num(use.exact_amount)}¢"
            )
        trace["exact_amount"] = _num(exact)
        steps.append(f"{_num(exact)}¢ rounded half up once → {line.amount}¢")
    trace["steps"] = steps
    return trace


def _expected_adjustments(adjustments: Sequence[ExpectedAdjustment]) -> _Expected:
    return _Expected(
        None,
        sum(a.amount for a in adjustments),
        {
            "adjustments": [
                {
                    "stripe_invoice_item_id": a.stripe_invoice_item_id,
                    "meter": a.meter,
                    "period_start": a.period_start,
                    "quantity_delta": _num(a.quantity_delta),
                    "amount": a.amount,
                }
                for a in adjustments
            ],
            "steps": ["late usage booked by the worker as invoice items on this invoice"],
        },
    )


# --------------------------------------------------------------------------- comparison


def _stripe_side(component: str, lines: Sequence[StripeInvoiceLine]) -> dict[str, Any]:
    return {
        "lines": [
            {
                "id": line.stripe_invoice_line_id,
                "quantity": None if line.quantity_decimal is None else _num(line.quantity_decimal),
                "amount": line.amount,
                "price": line.stripe_price_id,
                "proration": line.proration,
                "invoice_item": line.stripe_invoice_item_id,
                "period_start": isoformat_z(line.period_start_at) if line.period_start_at else None,
                "period_end": isoformat_z(line.period_end_at) if line.period_end_at else None,
                "description": line.description,
            }
            for line in lines
        ],
        "component": component,
    }


def _stripe_quantity(component: str, lines: Sequence[StripeInvoiceLine]) -> Decimal | None:
    if component in (MINIMUM, ADJUSTMENT) or not lines:
        return None
    if component == SEAT_PRORATION:
        # A credit line carries the old quantity, a debit line the new: the net is the change.
        return sum(
            ((q if line.amount >= 0 else -q) for line in lines if (q := line.quantity_decimal)),
            Decimal(0),
        )
    return sum((line.quantity_decimal or Decimal(0) for line in lines), Decimal(0))


def _compare(
    component: str, expected: _Expected | None, lines: Sequence[StripeInvoiceLine]
) -> LineComparison:
    stripe_amount = sum(line.amount for line in lines) if lines else None
    stripe_quantity = _stripe_quantity(component, lines)
    expected_quantity = None if expected is None else expected.quantity
    if component in (MINIMUM, ADJUSTMENT):
        expected_quantity = None
    tolerance = ROUNDING_TOLERANCE
    if component == SEAT_PRORATION:
        credits = sum(1 for line in lines if line.amount < 0)
        tolerance = max(ROUNDING_TOLERANCE, credits * ROUNDING_TOLERANCE)
    difference = (stripe_amount or 0) - (expected.amount if expected else 0)
    trace: dict[str, Any] = {
        "expected": None if expected is None else expected.trace,
        "stripe": _stripe_side(component, lines),
        "difference_amount": difference,
        "rounding_tolerance": tolerance,
    }
    status, why = _verdict(
        component,
        expected,
        expected_quantity,
        stripe_amount,
        stripe_quantity,
        difference,
        tolerance,
    )
    trace["verdict"] = why
    return LineComparison(
        component=component,
        status=status,
        expected_quantity=expected_quantity,
        expected_amount=None if expected is None else expected.amount,
        stripe_quantity=stripe_quantity,
        stripe_amount=stripe_amount,
        explanation=why,
        trace=trace,
    )


def _verdict(  # noqa: PLR0917 - both sides of one comparison, always passed together
    component: str,
    expected: _Expected | None,
    expected_quantity: Decimal | None,
    stripe_amount: int | None,
    stripe_quantity: Decimal | None,
    difference: int,
    tolerance: int,
) -> tuple[Status, str]:
    if expected is None:
        assert stripe_amount is not None
        if stripe_amount == 0:
            return Status.MATCHED, f"{component}: Stripe bills 0¢, nothing expected"
        return (
            Status.UNEXPECTED_IN_STRIPE,
            f"{component}: Stripe bills {stripe_amount}¢ the ledger does not explain",
        )
    if stripe_amount is None:
        if expected.amount == 0 and not expected_quantity:
            return Status.MATCHED, f"{component}: nothing to bill and Stripe has no line"
        return (
            Status.MISSING_IN_STRIPE,
            f"{component}: expected {expected.amount}¢ "
            f"(quantity {_num(expected_quantity)}) but Stripe has no line",
        )
    quantity_differs = (
        expected_quantity is not None
        and stripe_quantity is not None
        and expected_quantity != stripe_quantity
    )
    if quantity_differs:
        return (
            Status.MISMATCHED,
            f"{component}: quantity {_num(stripe_quantity)} in Stripe, "
            f"{_num(expected_quantity)} in the ledger; amount {stripe_amount}¢ vs "
            f"{expected.amount}¢",
        )
    if difference == 0:
        return Status.MATCHED, f"{component}: {stripe_amount}¢ as expected"
    if abs(difference) <= tolerance:
        return (
            Status.ROUNDING,
            f"{component}: {stripe_amount}¢ vs {expected.amount}¢ expected, within "
            f"{tolerance}¢ of separately rounded lines",
        )
    return (
        Status.MISMATCHED,
        f"{component}: {stripe_amount}¢ in Stripe, {expected.amount}¢ expected "
        f"(difference {difference:+d}¢)",
    )


def _unexpected(line: StripeInvoiceLine) -> LineComparison:
    status = Status.MATCHED if line.amount == 0 else Status.UNEXPECTED_IN_STRIPE
    why = (
        f"line {line.stripe_invoice_line_id} ({line.description or 'no description'}): "
        f"{line.amount}¢ not backed by the ledger or the catalog"
    )
    return LineComparison(
        component=UNEXPECTED,
        status=status,
        expected_quantity=None,
        expected_amount=None,
        stripe_quantity=line.quantity_decimal,
        stripe_amount=line.amount,
        explanation=why,
        trace={
            "expected": None,
            "stripe": _stripe_side(UNEXPECTED, [line]),
            "difference_amount": line.amount,
            "verdict": why,
        },
    )


def _span(line: ExpectedLine) -> dict[str, str | None]:
    return {
        "period_start": isoformat_z(line.period_start) if line.period_start else None,
        "period_end": isoformat_z(line.period_end) if line.period_end else None,
    }


def _num(value: Decimal | None) -> str | None:
    return None if value is None else format_decimal(value)

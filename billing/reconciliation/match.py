"""Reconciliation matching (pure): a Stripe invoice's lines compared with the expected lines.

Stripe lines are sorted into components: `seats` (the seat price's non-proration lines),
`seat_proration` (the seat item's proration lines, credit and debit summed), one per meter
(lines whose price is the org's metered price for it), `minimum`, `credit` and `adjustment`
(invoice items tagged with `billing_kind`), and everything else `unexpected_in_stripe`, line by
line. Each component gets a verdict and a trace explaining both sides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from billing.core.components import (
    BILLING_KIND,
    CREDIT,
    MINIMUM,
    SEAT_CREDIT,
    SEAT_PRORATION,
    SEATS,
    BillingKind,
)
from billing.core.periods import parse_instant
from billing.ledger.expected_invoice import ExpectedLine
from billing.pricing.book import Terms
from billing.pricing.charge import meter_value
from billing.reconciliation.component_map import ADJUSTMENT, UNEXPECTED, ComponentMap
from billing.reconciliation.traces import (
    MeterFacts,
    meter_trace,
    num,
    proration_trace,
    span,
    stripe_side,
)
from billing.stripe_gateway.records import StripeInvoice, StripeInvoiceLine


class Status(StrEnum):
    """A line's (and, as the worst of its lines, an invoice's) verdict, best first."""

    MATCHED = "matched"
    ROUNDING = "rounding"  # within a cent per line: Stripe rounds proration halves apart
    AWAITING_USAGE = "awaiting_usage"  # a draft whose meters lag our pushes: not judged yet
    MISMATCHED = "mismatched"
    MISSING_IN_STRIPE = "missing_in_stripe"
    UNEXPECTED_IN_STRIPE = "unexpected_in_stripe"
    ERROR = "error"  # the invoice could not be reconciled (unknown customer, no ledger)


CUSTOMER_BALANCE = "customer_balance"  # a balance Stripe applied to a final invoice's amount due
INVOICE_TOTAL = "invoice_total"  # the total differs from the lines (a discount, a tax)
PERIOD_SLACK = timedelta(hours=1)  # Stripe's period bounds and the ledger's, by different clocks
ROUNDING_TOLERANCE = 1  # cents per independently rounded Stripe line pair
_AMOUNT_ONLY = (MINIMUM, CREDIT, ADJUSTMENT)  # our invoice items: judged on amounts alone

# Worst last: an invoice takes the worst status of its lines.
SEVERITY: Mapping[Status, int] = {
    Status.MATCHED: 0,
    Status.ROUNDING: 1,
    Status.AWAITING_USAGE: 2,
    Status.MISMATCHED: 3,
    Status.MISSING_IN_STRIPE: 4,
    Status.UNEXPECTED_IN_STRIPE: 5,
    Status.ERROR: 6,
}


@dataclass(frozen=True)
class ExpectedCharge:
    """An expected amount of a component not drawn from the ledger's lines: late usage's
    adjustment (billing.reconciliation.late_usage), with its explanation."""

    amount: int
    trace: Mapping[str, Any]


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
        """The worst line's status; never `matched` or `rounding` when the totals differ by
        more than the rounding the lines account for (a last guard: money is never silently
        wrong, whatever a line's verdict said)."""
        status = worst(line.status for line in self.lines)
        if status in (Status.MATCHED, Status.ROUNDING):
            allowed = sum(
                abs(line.difference_amount) for line in self.lines if line.status is Status.ROUNDING
            )
            if abs(self.stripe_total_amount - self.expected_total_amount) > allowed:
                return Status.MISMATCHED
        return status

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
    adjustment: ExpectedCharge | None = None,
    own_period_start: datetime | None = None,
    notes: Mapping[str, Sequence[Mapping[str, str]]] | None = None,
    balance: ExpectedCharge | None = None,
) -> InvoiceComparison:
    """Compare `invoice` with the expected lines that belong on it (chosen by the caller).

    A minimum-commitment item of another period than `own_period_start` is a correction of
    that period: it is compared with the `adjustment`. `notes` are the timing rules applied to
    each component, shown in its trace."""
    facts = meter_facts or {}
    stripe_groups: dict[str, list[StripeInvoiceLine]] = {}
    unexpected: list[StripeInvoiceLine] = []
    for line, sorted_as in zip(invoice.lines, components.components_of(invoice.lines), strict=True):
        component = sorted_as
        if component == MINIMUM and own_period_start is not None:
            start = period_start_of_item(line)
            if start is not None and abs(start - own_period_start) > PERIOD_SLACK:
                component = ADJUSTMENT
        if component == UNEXPECTED:
            unexpected.append(line)
        else:
            stripe_groups.setdefault(component, []).append(line)
    expected: dict[str, _Expected] = {}
    for wanted in expected_lines:
        expected[wanted.code] = _merge(
            expected.get(wanted.code), _expected_of(wanted, terms, facts)
        )
    if adjustment is not None and (adjustment.amount or ADJUSTMENT in stripe_groups):
        expected[ADJUSTMENT] = _Expected(None, adjustment.amount, dict(adjustment.trace))
    for component, applied in (notes or {}).items():
        if applied:
            found = expected.setdefault(component, _Expected(None, 0, {}))
            found.trace["timing_rules"] = list(applied)
    order = list(dict.fromkeys([*expected, *stripe_groups]))
    results = [
        _compare(component, expected.get(component), stripe_groups.get(component, []))
        for component in order
    ]
    results.extend(_unexpected(line) for line in unexpected)
    results.extend(_invoice_level(invoice, balance))
    return InvoiceComparison(tuple(results))


def period_start_of_item(line: StripeInvoiceLine) -> datetime | None:
    """The usage period an invoice item of ours bills (its `period_start` metadata)."""
    text = line.metadata.get("period_start")
    if not text:
        return None
    try:
        return parse_instant(text)
    except ValueError:
        return None


def _invoice_level(
    invoice: StripeInvoice, balance: ExpectedCharge | None = None
) -> list[LineComparison]:
    """What the invoice's total and amount due hold beyond its lines: a discount or tax (the
    total differs from the lines' sum) and, once final, a customer balance applied. The ledger
    holds neither, so either is unexpected, except a balance carried from our own credits
    (`balance`, billing.reconciliation.balance) applied exactly as expected."""
    found = []
    lines_amount = sum(line.amount for line in invoice.lines)
    if invoice.total_amount != lines_amount:
        found.append(
            _invoice_line(
                INVOICE_TOTAL,
                invoice.total_amount - lines_amount,
                f"the invoice total {invoice.total_amount}¢ differs from its lines' sum "
                f"{lines_amount}¢ (a discount or tax the ledger does not hold)",
            )
        )
    applied = invoice.amount_due - invoice.total_amount
    if balance is not None and applied and applied == balance.amount:
        found.append(
            LineComparison(
                component=CUSTOMER_BALANCE,
                status=Status.MATCHED,
                expected_quantity=None,
                expected_amount=balance.amount,
                stripe_quantity=None,
                stripe_amount=applied,
                explanation=f"{CUSTOMER_BALANCE}: {applied}¢ carried from our own credits",
                trace={"expected": dict(balance.trace), "stripe": {"amount": applied}},
            )
        )
    elif invoice.status not in (None, "draft") and invoice.total_amount > 0 and applied:
        found.append(
            _invoice_line(
                CUSTOMER_BALANCE,
                applied,
                f"Stripe applied {applied:+d}¢ of customer balance: {invoice.amount_due}¢ due "
                f"on a total of {invoice.total_amount}¢, a balance the ledger does not hold",
            )
        )
    return found


def _invoice_line(component: str, amount: int, why: str) -> LineComparison:
    return LineComparison(
        component=component,
        status=Status.UNEXPECTED_IN_STRIPE,
        expected_quantity=None,
        expected_amount=0,
        stripe_quantity=None,
        stripe_amount=amount,
        explanation=why,
        trace={
            "expected": None,
            "stripe": {"amount": amount},
            "difference_amount": amount,
            "verdict": why,
        },
    )


# --------------------------------------------------------------------------- expected side


def _expected_of(
    line: ExpectedLine, terms: Terms | None, facts: Mapping[str, MeterFacts]
) -> _Expected:
    trace: dict[str, Any] = {
        "description": line.description,
        "quantity": num(line.quantity),
        "amount": line.amount,
    }
    quantity: Decimal | None = line.quantity
    if line.code == SEATS:
        trace["steps"] = [
            f"{num(line.quantity)} seat(s) at the term start × {num(line.unit_amount_decimal)}¢"
            f" = {line.amount}¢ upfront for the term",
        ]
        trace["term"] = span(line)
    elif line.code in (SEAT_PRORATION, SEAT_CREDIT):
        trace["prorations"] = [proration_trace(line)]
    elif line.code in (MINIMUM, CREDIT):
        quantity = None
        trace["steps"] = [line.description]
    else:
        trace.update(meter_trace(line, terms, facts.get(line.code)))
        # Stripe's meter and invoice count in the price's unit (hours of 3,600 seconds).
        quantity = meter_value(line.quantity, line.per)
        if line.per != 1:
            trace["stripe_unit"] = (
                f"{num(line.quantity)} ledger units ÷ {line.per} = {num(quantity)} on the invoice"
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


# --------------------------------------------------------------------------- comparison


def _stripe_quantity(component: str, lines: Sequence[StripeInvoiceLine]) -> Decimal | None:
    if component in _AMOUNT_ONLY or not lines:
        return None
    if component == SEAT_PRORATION:
        # A credit line carries the old quantity, a debit line the new: the net is the change.
        return sum(
            ((q if line.amount >= 0 else -q) for line in lines if (q := line.quantity_decimal)),
            Decimal(0),
        )
    return sum((_seats_or_quantity(line) for line in lines), Decimal(0))


def _seats_or_quantity(line: StripeInvoiceLine) -> Decimal:
    """A line's quantity; for a renewal's seat correction, the seats it adds."""
    if line.metadata.get(BILLING_KIND) == BillingKind.SEAT_RENEWAL:
        return Decimal(line.metadata.get("seat_delta", "0"))
    return line.quantity_decimal or Decimal(0)


def _compare(
    component: str, expected: _Expected | None, lines: Sequence[StripeInvoiceLine]
) -> LineComparison:
    stripe_amount = sum(line.amount for line in lines) if lines else None
    stripe_quantity = _stripe_quantity(component, lines)
    expected_quantity = None if expected is None else expected.quantity
    if component in _AMOUNT_ONLY:
        expected_quantity = None
    tolerance = ROUNDING_TOLERANCE
    if component == SEAT_PRORATION:
        credits = sum(1 for line in lines if line.amount < 0)
        tolerance = max(ROUNDING_TOLERANCE, credits * ROUNDING_TOLERANCE)
    difference = (stripe_amount or 0) - (expected.amount if expected else 0)
    trace: dict[str, Any] = {
        "expected": None if expected is None else expected.trace,
        "stripe": stripe_side(component, lines),
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
            f"(quantity {num(expected_quantity)}) but Stripe has no line",
        )
    quantity_differs = (
        expected_quantity is not None
        and stripe_quantity is not None
        and expected_quantity != stripe_quantity
    )
    if quantity_differs:
        return (
            Status.MISMATCHED,
            f"{component}: quantity {num(stripe_quantity)} in Stripe, "
            f"{num(expected_quantity)} in the ledger; amount {stripe_amount}¢ vs "
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


def rejudge(
    line: LineComparison,
    stripe_quantity: Decimal | None,
    stripe_amount: int,
    note: str,
    evidence: Mapping[str, Any],
) -> LineComparison:
    """The same component judged again on what Stripe will bill (a draft's line projected
    to its finalization), by the same rules; `note` and `evidence` join the trace."""
    expected = (
        None
        if line.expected_amount is None
        else _Expected(line.expected_quantity, line.expected_amount, {})
    )
    difference = stripe_amount - (line.expected_amount or 0)
    status, why = _verdict(
        line.component,
        expected,
        line.expected_quantity,
        stripe_amount,
        stripe_quantity,
        difference,
        ROUNDING_TOLERANCE,
    )
    why = f"{note}; {why}"
    trace = {**line.trace, "projected": dict(evidence), "verdict": why}
    trace["difference_amount"] = difference
    return LineComparison(
        line.component,
        status,
        line.expected_quantity,
        line.expected_amount,
        stripe_quantity,
        stripe_amount,
        why,
        trace,
    )


def mismatch(line: LineComparison, why: str, evidence: Mapping[str, Any]) -> LineComparison:
    """The component found wrong for a reason beside its amounts (an unknown price, say)."""
    trace = {**line.trace, "projected": dict(evidence), "verdict": why}
    return LineComparison(
        line.component,
        Status.MISMATCHED,
        line.expected_quantity,
        line.expected_amount,
        line.stripe_quantity,
        line.stripe_amount,
        why,
        trace,
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
            "stripe": stripe_side(UNEXPECTED, [line]),
            "difference_amount": line.amount,
            "verdict": why,
        },
    )

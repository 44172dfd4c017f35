"""Late usage expected on a cycle invoice: for each earlier usage period whose ledger changed
after it was invoiced, what the ledger now says the period costs less what Stripe billed for it.

SPEC §3 and §10 ("Late usage"): a ledger change for a period whose invoice is final becomes an
adjustment on the org's next invoice, whatever its age, with the minimum top-up corrected. The
expectation uses no push record:
- the ledger side is the period's usage lines and minimum, priced on the period's terms, from
  the usage and resource reports received before the invoice was drafted;
- the Stripe side is what Stripe's own earlier invoices billed for that period: its meter lines
  on the period's invoice, its minimum top-up, and the adjustments of that period (metadata
  `billing_kind` and `period_start`) on the invoices drafted since.
The difference must be this invoice's `adjustment` component. What the ledger missed on one
invoice is thus expected on the next, and what Stripe billed twice shows as a negative
expectation.

One timing rule, `late_usage_received_just_before_draft`: the worker books late usage at its
hourly push, so usage received less than LATE_USAGE_WINDOW before Stripe drafted the invoice
may be booked on this invoice or on the next. The invoice is judged against the ledger both
with and without that usage; when only the second matches, the trace names the rule (and the
next invoice expects the rest, since Stripe has not billed it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from billing.core.components import (
    BILLING_KIND,
    CREDIT,
    SEAT_CREDIT,
    SEAT_PRORATION,
    SEATS,
    BillingKind,
)
from billing.core.money import format_decimal
from billing.core.periods import Period
from billing.ledger.expected_invoice import compute_expected_invoice
from billing.ledger.queries import org_ledger
from billing.pricing.book_cache import BookCache
from billing.pricing.lifecycle import NO_PLAN
from billing.reconciliation.component_map import UNEXPECTED
from billing.reconciliation.match import period_start_of_item
from billing.reconciliation.records import table_of, usage_period_containing
from billing.stripe_gateway.records import StripeInvoice, StripeInvoiceLine
from models.ledger import OrgPlanChange, ResourceReport, UsageEvent

# The worker books late usage at its hourly push of every org; 15 minutes of margin.
LATE_USAGE_WINDOW = timedelta(minutes=75)
RULE_LATE_USAGE_JUST_BEFORE_DRAFT = "late_usage_received_just_before_draft"
# Stripe's period bounds and the ledger's are written by different clocks.
_SLACK = timedelta(hours=1)


@dataclass(frozen=True)
class LatePeriod:
    """An earlier usage period's charge by the ledger: usage lines and minimum, in cents."""

    period: Period
    ledger_amount: int  # from what was received before the draft
    ledger_amount_before_window: int  # without what arrived in the window before the draft
    lines: tuple[tuple[str, str, int], ...]  # (code, quantity, amount) at the draft


@dataclass(frozen=True)
class BilledPart:
    """One Stripe line that billed an earlier period's usage, minimum or adjustment."""

    stripe_invoice_id: str
    component: str
    amount: int
    description: str | None


@dataclass(frozen=True)
class LateUsage:
    """The `adjustment` a cycle invoice must hold, with its explanation."""

    periods: tuple[LatePeriod, ...] = ()
    billed: Mapping[datetime, tuple[BilledPart, ...]] = field(default_factory=dict)

    def billed_amount(self, late: LatePeriod) -> int:
        return sum(part.amount for part in self.billed.get(late.period.period_start, ()))

    @property
    def amount(self) -> int:
        return sum(p.ledger_amount - self.billed_amount(p) for p in self.periods)

    @property
    def amount_before_window(self) -> int:
        return sum(p.ledger_amount_before_window - self.billed_amount(p) for p in self.periods)

    def trace(self) -> dict[str, Any]:
        rows = []
        steps = []
        for late in self.periods:
            billed = self.billed.get(late.period.period_start, ())
            rows.append(
                {
                    "period": late.period.label(),
                    "ledger_lines": [
                        {"code": code, "quantity": quantity, "amount": amount}
                        for code, quantity, amount in late.lines
                    ],
                    "ledger_amount": late.ledger_amount,
                    "ledger_amount_before_window": late.ledger_amount_before_window,
                    "billed": [
                        {
                            "stripe_invoice_id": part.stripe_invoice_id,
                            "component": part.component,
                            "amount": part.amount,
                            "description": part.description,
                        }
                        for part in billed
                    ],
                }
            )
            steps.append(
                f"{late.period.label()}: the ledger now says {late.ledger_amount}¢ "
                f"({', '.join(f'{c} {q} → {a}¢' for c, q, a in late.lines)}); Stripe billed "
                f"{self.billed_amount(late)}¢ for it so far → "
                f"{late.ledger_amount - self.billed_amount(late):+d}¢ here"
            )
        return {"late_periods": rows, "steps": steps}


def late_periods(
    session: Session, org_id: str, period: Period, drafted_at: datetime, books: BookCache
) -> tuple[LatePeriod, ...]:
    """The ledger side (database only): each period before `period` holding usage received
    since `period` began (less the window), priced as of the draft and before the window."""
    found = []
    for late in _candidates(session, org_id, period, drafted_at):
        at_draft = _usage_charge(session, org_id, late, drafted_at, books)
        before = _usage_charge(session, org_id, late, drafted_at - LATE_USAGE_WINDOW, books)
        found.append(
            LatePeriod(late, sum(a for _, _, a in at_draft), sum(a for _, _, a in before), at_draft)
        )
    return tuple(found)


def billed_for(
    periods: Sequence[LatePeriod],
    invoices: Sequence[StripeInvoice],
    component_of: Callable[[StripeInvoiceLine], str],
    *,
    own_invoice_id: str | None,
    drafted_at: datetime,
) -> dict[datetime, tuple[BilledPart, ...]]:
    """The Stripe side (pure): the lines of Stripe's earlier invoices that billed each period;
    `component_of` classifies a line (match.ComponentMap.component_of)."""
    billed: dict[datetime, list[BilledPart]] = {}
    for invoice in invoices:
        created = invoice.created_at
        if (
            invoice.stripe_invoice_id == own_invoice_id
            or invoice.status == "void"
            or (created is not None and created >= drafted_at)
        ):
            continue
        for line in invoice.lines:
            component = component_of(line)
            start = _billed_period_start(line, component)
            if start is None:
                continue
            for late in periods:
                if abs(start - late.period.period_start) <= _SLACK:
                    billed.setdefault(late.period.period_start, []).append(
                        BilledPart(
                            invoice.stripe_invoice_id or "",
                            component,
                            line.amount,
                            line.description,
                        )
                    )
    return {start: tuple(parts) for start, parts in billed.items()}


def is_ours(line: StripeInvoiceLine) -> bool:
    return line.metadata.get(BILLING_KIND) in set(BillingKind)


def _billed_period_start(line: StripeInvoiceLine, component: str) -> datetime | None:
    if component == CREDIT:
        return None  # a period's credit stays as applied: late usage is billed in full
    if is_ours(line):
        return period_start_of_item(line)
    if component in (SEATS, SEAT_PRORATION) or line.proration:
        return None
    # A meter's line, or the minimum top-up's when reported as usage (billing.usage.topup).
    return line.period_start_at if component != UNEXPECTED else None


def _candidates(
    session: Session, org_id: str, period: Period, drafted_at: datetime
) -> list[Period]:
    """Earlier usage periods with usage or resource reports received since the previous
    invoice's window opened, before this invoice was drafted."""
    since = period.period_start - LATE_USAGE_WINDOW
    instants: set[datetime] = set()
    for model in (UsageEvent, ResourceReport):
        table = table_of(model)
        rows = session.connection().execute(
            sa.select(table.c.at)
            .where(
                table.c.org_id == org_id,
                table.c.at < period.period_start,
                table.c.received_at >= since,
                table.c.received_at < drafted_at,
            )
            .distinct()
        )
        instants.update(at for (at,) in rows)
    periods = {usage_period_containing(session, org_id, at) for at in instants}
    return sorted(p for p in periods if p is not None and p.period_end <= period.period_start)


def _usage_charge(
    session: Session, org_id: str, period: Period, received_before: datetime, books: BookCache
) -> tuple[tuple[str, str, int], ...]:
    ledger = org_ledger(session, org_id, period, received_before=received_before)
    expected = None if ledger is None else compute_expected_invoice(ledger, period, books)
    if expected is None:
        return ()
    return tuple(
        (line.code, format_decimal(line.quantity), line.amount)
        for line in expected.lines
        if line.code not in (SEATS, SEAT_PRORATION, SEAT_CREDIT)
    )


def describe_rule(late: LateUsage) -> str:
    return (
        f"usage received in the {int(LATE_USAGE_WINDOW.total_seconds() // 60)} minutes before "
        f"the draft is booked at the worker's next push, after it: "
        f"{late.amount - late.amount_before_window:+d}¢ of it is expected on the next invoice"
    )


__all__: Sequence[str] = (
    "LATE_USAGE_WINDOW",
    "RULE_LATE_USAGE_JUST_BEFORE_DRAFT",
    "BilledPart",
    "LatePeriod",
    "LateUsage",
    "billed_for",
    "describe_rule",
    "late_periods",
)


def after_end_period(session: Session, org_id: str, invoice: StripeInvoice) -> Period | None:
    """For the one-off invoice of late usage after a cancellation (billing.usage.after_end):
    from the end of the org's subscription to the invoice, the span whose arrivals it bills."""
    if invoice.metadata.get(BILLING_KIND) != BillingKind.LATE_USAGE_AFTER_END:
        return None
    created = invoice.created_at
    if created is None:
        return None
    ended = session.exec(
        select(sa.func.max(OrgPlanChange.at)).where(
            OrgPlanChange.org_id == org_id,
            OrgPlanChange.plan == NO_PLAN,
            col(OrgPlanChange.at) <= created,
        )
    ).one()
    if ended is None or created <= ended:
        return None
    return Period(ended, created + timedelta(seconds=1))

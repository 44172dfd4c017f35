"""Which usage periods of an org are open, and what the ledger and Stripe say about them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlmodel import Session, select

from billing.core.meters import Interval, Meter
from billing.core.periods import Period, term_containing, term_period
from billing.ledger.queries import org_ledger
from billing.pricing.charge import ledger_quantity
from billing.stripe_gateway.records import StripeInvoice
from models.push_records import UsagePeriod
from models.stripe_records import (
    StripeCustomerRecord,
    StripeSubscriptionItemRecord,
    StripeSubscriptionRecord,
)


@dataclass(frozen=True)
class OrgSubscription:
    """An org's Stripe customer, subscription and metered items (Stripe's usage periods)."""

    stripe_customer_id: str
    stripe_subscription_id: str
    anchor_at: datetime  # start of the metered items' first period (Stripe's anchor)
    items: dict[Meter, str]  # meter -> stripe subscription item id


def org_subscription(session: Session, org_id: str) -> OrgSubscription | None:
    customer = session.get(StripeCustomerRecord, org_id)
    sub = session.get(StripeSubscriptionRecord, org_id)
    if (
        customer is None
        or customer.stripe_customer_id is None
        or sub is None
        or sub.stripe_subscription_id is None
    ):
        return None
    items: dict[Meter, str] = {}
    anchors: list[datetime] = []
    for row in session.exec(
        select(StripeSubscriptionItemRecord).where(StripeSubscriptionItemRecord.org_id == org_id)
    ):
        if row.component in set(Meter):
            items[Meter(row.component)] = row.stripe_subscription_item_id
            if row.current_period_start_at is not None:
                anchors.append(row.current_period_start_at)
    anchor = min(anchors) if anchors else sub.term_start_at
    return OrgSubscription(customer.stripe_customer_id, sub.stripe_subscription_id, anchor, items)


def open_periods(
    sub: OrgSubscription, states: Iterable[UsagePeriod], now: datetime
) -> list[Period]:
    """From the oldest usage period not known final up to the one containing `now`."""
    rows = list(states)
    current = term_containing(sub.anchor_at, Interval.MONTH, max(now, sub.anchor_at))
    open_starts = [r.period_start_at for r in rows if r.invoice_final_at is None]
    known_ends = [r.period_end_at for r in rows]
    # Periods never pushed start after the newest known one (or at the anchor).
    start = min([*open_starts, max(known_ends)]) if known_ends else sub.anchor_at
    periods: list[Period] = []
    index = 0
    while True:
        period = term_period(sub.anchor_at, Interval.MONTH, index)
        index += 1
        if period.period_start > current.period_start:
            return periods
        if period.period_end > start:
            periods.append(period)


def ledger_totals(
    session: Session, org_id: str, period: Period, now: datetime
) -> dict[Meter, Decimal]:
    """Usage in the period so far: events and resource-hours up to `now` (a full hour counts
    once it has begun)."""
    end = min(period.period_end, ceil_to(now, timedelta(hours=1)))
    if end <= period.period_start:
        return {}
    ledger = org_ledger(session, org_id, Period(period.period_start, end))
    if ledger is None:
        return {}
    totals = dict(ledger.usage)
    totals[Meter.IAC_RESOURCE_HOURS] = Decimal(ledger.resource_hours)
    return totals


def note_invoice(
    state: UsagePeriod,
    invoice: StripeInvoice | None,
    stripe_item_id: str,
    per: int,
    now: datetime,
) -> None:
    """Mark the period final once Stripe's invoice for it is past draft; keep what it billed
    (in ledger units: Stripe shows the price's unit, `per` of them)."""
    if state.invoice_final_at is not None or invoice is None or invoice.status == "draft":
        return
    state.invoice_final_at = now
    state.stripe_invoice_id = invoice.stripe_invoice_id
    state.invoiced_quantity = ledger_quantity(
        sum(
            (
                line.quantity_decimal or Decimal(0)
                for line in invoice.lines
                if line.stripe_subscription_item_id == stripe_item_id and not line.proration
            ),
            Decimal(0),
        ),
        per,
    )


def ceil_to(at: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    remainder = (at - epoch) % step
    return at if not remainder else at + (step - remainder)

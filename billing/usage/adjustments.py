"""Late usage: a ledger change after a period's invoice is final, billed on the next invoice.

Nothing more can be reported to the meter for a final period, and nothing may be dropped or
billed twice: the difference between what the ledger now says and what was invoiced (plus the
adjustments already made) is priced as the difference of the meter line, and booked as one
invoice item (pending: Stripe sweeps it into the org's next invoice) with metadata
`billing_kind=usage_adjustment` that reconciliation recognises. Each adjustment is a
`usage_adjustments` row written before the Stripe call with a deterministic key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import sqlalchemy as sa
import structlog
from sqlmodel import Session, select

from billing.core.components import BILLING_KIND, BillingKind
from billing.core.keys import usage_adjustment_key
from billing.core.meters import Meter
from billing.core.periods import Period
from billing.ledger.stripe_writes import mark, write_to_stripe
from billing.pricing.book import Terms
from billing.pricing.charge import price_meter
from billing.stripe_gateway.ports import InvoiceItemWriter
from billing.stripe_gateway.records import StripeInvoiceItem
from models.push_records import UsageAdjustment, UsagePeriod
from models.stripe_records import WriteStatus

log = structlog.get_logger(__name__)


class AdjustmentGateway(InvoiceItemWriter, Protocol):
    """The part of the gateway late-usage adjustments use."""


@dataclass(frozen=True)
class AdjustmentTarget:
    """The org, meter and final period an adjustment is for, with their Stripe ids."""

    org_id: str
    stripe_customer_id: str
    stripe_subscription_id: str
    terms: Terms
    meter: Meter
    period: Period
    now: datetime


@dataclass(frozen=True)
class Adjustment:
    """What happened to a final period's meter: nothing, an adjustment, or a failure."""

    quantity_delta: Decimal
    amount: int | None = None
    error: str | None = None


def adjust_final_period(
    session: Session,
    gateway: AdjustmentGateway,
    target: AdjustmentTarget,
    state: UsagePeriod,
    quantity: Decimal,
) -> Adjustment:
    """Book the difference between the ledger and what was billed; commits its own rows.

    An adjustment a crash left `started` is sent again first, with its own key and amount
    (Stripe's idempotency answers the first response if it got through), before any new
    difference is computed.
    """
    unfinished = session.exec(
        select(UsageAdjustment).where(
            UsageAdjustment.org_id == target.org_id,
            UsageAdjustment.meter == target.meter.value,
            UsageAdjustment.period_start_at == target.period.period_start,
            UsageAdjustment.status == WriteStatus.STARTED,
        )
    ).first()
    if unfinished is not None:
        failure = _send(session, gateway, unfinished, state, target)
        if failure is not None:
            return failure
    billed = (state.invoiced_quantity or Decimal(0)) + state.adjusted_quantity
    delta = quantity - billed
    state.ledger_quantity = quantity
    session.add(state)
    if delta == 0:
        session.commit()
        return Adjustment(Decimal(0))
    row = _new_adjustment(session, target, quantity, billed)
    failure = _send(session, gateway, row, state, target)
    if failure is not None:
        return failure
    log.info(
        "usage.adjusted",
        org_id=target.org_id,
        meter=target.meter.value,
        period=target.period.label(),
        quantity_delta=str(delta),
        amount=row.amount,
    )
    return Adjustment(delta, row.amount)


def _new_adjustment(
    session: Session, target: AdjustmentTarget, quantity: Decimal, billed: Decimal
) -> UsageAdjustment:
    """The next adjustment of the period's meter: the priced difference of the meter line."""
    org_id, meter, period = target.org_id, target.meter, target.period
    price = target.terms.meters[meter]
    sequence = 1 + int(
        session.exec(
            select(sa.func.count())
            .select_from(UsageAdjustment)
            .where(
                UsageAdjustment.org_id == org_id,
                UsageAdjustment.meter == meter.value,
                UsageAdjustment.period_start_at == period.period_start,
            )
        ).one()
    )
    return UsageAdjustment(
        org_id=org_id,
        meter=meter.value,
        period_start_at=period.period_start,
        sequence=sequence,
        quantity_delta=quantity - billed,
        amount=price_meter(price, quantity).amount - price_meter(price, billed).amount,
        idempotency_key=usage_adjustment_key(org_id, meter, period.period_start, sequence),
        status=WriteStatus.STARTED,
        created_at=target.now,
    )


def _send(
    session: Session,
    gateway: AdjustmentGateway,
    row: UsageAdjustment,
    state: UsagePeriod,
    target: AdjustmentTarget,
) -> Adjustment | None:
    """Create the row's invoice item (if it has an amount) and complete the row."""
    terms, meter, period, now = target.terms, target.meter, target.period, target.now
    delta, amount, key = row.quantity_delta, row.amount, row.idempotency_key

    def done(item: StripeInvoiceItem | None) -> None:
        if item is not None:
            row.stripe_invoice_item_id = item.stripe_invoice_item_id
        state.adjusted_quantity += delta
        state.updated_at = now
        session.add(state)

    if amount == 0:  # nothing to bill: no invoice item
        mark(row, WriteStatus.DONE, now)
        done(None)
        session.add(row)
        session.commit()
        return None
    metadata = {
        BILLING_KIND: BillingKind.USAGE_ADJUSTMENT.value,
        "org_id": row.org_id,
        "meter": meter.value,
        "period_start": period.period_start.isoformat(),
        "quantity_delta": f"{delta.normalize():f}",
    }
    outcome = write_to_stripe(
        session,
        row,
        now,
        lambda: gateway.create_invoice_item(
            stripe_customer_id=target.stripe_customer_id,
            amount=amount,
            currency=terms.currency,
            description=(
                f"Late usage for {period.label()}: {meter.value} "
                f"{'+' if delta > 0 else ''}{delta.normalize():f}"
            ),
            idempotency_key=key,
            stripe_subscription_id=target.stripe_subscription_id,
            metadata=metadata,
        ),
        on_done=done,
    )
    return Adjustment(delta, error=outcome.error) if outcome.error else None

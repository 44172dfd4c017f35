"""The minimum commitment: a top-up line on the draft invoice when a month's usage is under it.

When a paid org's usage charge for a usage period is below its terms' `minimum_amount`, the
period's invoice must show the usage and, as a separate line, the difference (SPEC.md §2.2).
Once the period has ended and Stripe has drafted its invoice, the top-up is added to that draft
as an invoice item (`billing_kind=minimum_commitment`, which reconciliation matches with the
expected invoice's `minimum` line), computed from the same ledger totals the final usage push
sent. Later usage in the grace period changes the top-up by a correcting item, never by a
second full one. Each item is a `minimum_topups` row written before the Stripe call with a
deterministic key; a row a crash left `started` is sent again with its key.

If the invoice is already final (the close missed the grace period), the top-up becomes a
pending item that Stripe puts on the next invoice, so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
import structlog
from sqlmodel import Session, select

from billing.core.components import BILLING_KIND, MINIMUM, BillingKind
from billing.core.errors import PermanentBillingError
from billing.core.keys import minimum_topup_key
from billing.core.meters import Meter
from billing.core.periods import Period
from billing.pricing.book import Terms
from billing.pricing.charge import usage_lines
from billing.usage.adjustments import AdjustmentGateway
from models.push_records import MinimumTopUp
from models.stripe_records import WriteStatus

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TopUp:
    usage_amount: int
    amount: int  # the total top-up now on the invoice
    changed_by: int  # what this run added (0 when already right)
    error: str | None = None


def ensure_minimum(
    session: Session,
    gateway: AdjustmentGateway,
    *,
    org_id: str,
    stripe_customer_id: str,
    stripe_subscription_id: str,
    stripe_invoice_id: str | None,
    terms: Terms,
    period: Period,
    usage: Mapping[Meter, Decimal],
    now: datetime,
) -> TopUp | None:
    """Make the period's top-up equal `minimum − usage charge` (None: no minimum applies)."""
    if terms.minimum_amount <= 0:
        return None
    usage = {meter: quantity for meter, quantity in usage.items() if meter in terms.meters}
    lines = usage_lines(terms, usage)
    usage_amount = sum(line.amount for line in lines if line.code != MINIMUM)
    wanted = max(0, terms.minimum_amount - usage_amount)
    rows = session.exec(
        select(MinimumTopUp).where(
            MinimumTopUp.org_id == org_id, MinimumTopUp.period_start_at == period.period_start
        )
    ).all()
    unfinished = next((row for row in rows if row.status == WriteStatus.STARTED), None)
    if unfinished is None:
        booked = sum(row.amount for row in rows if row.status == WriteStatus.DONE)
        if booked == wanted:
            return TopUp(usage_amount, wanted, 0)
        sequence = 1 + max((row.sequence for row in rows), default=0)
        unfinished = MinimumTopUp(
            org_id=org_id,
            period_start_at=period.period_start,
            sequence=sequence,
            usage_amount=usage_amount,
            amount=wanted - booked,
            stripe_invoice_id=stripe_invoice_id,
            idempotency_key=minimum_topup_key(org_id, period.period_start, sequence),
            status=WriteStatus.STARTED,
            created_at=now,
        )
        session.add(unfinished)
        session.commit()  # recorded before the Stripe call
    row = unfinished
    try:
        item = gateway.create_invoice_item(
            stripe_customer_id=stripe_customer_id,
            amount=row.amount,
            currency=terms.currency,
            description=(
                f"Minimum commitment for {period.label()}: "
                f"{terms.minimum_amount} less usage {row.usage_amount}"
                if row.sequence == 1
                else f"Minimum commitment correction for {period.label()}"
            ),
            idempotency_key=row.idempotency_key,
            stripe_subscription_id=stripe_subscription_id,
            stripe_invoice_id=row.stripe_invoice_id,
            metadata={
                BILLING_KIND: BillingKind.MINIMUM_COMMITMENT.value,
                "org_id": org_id,
                "period_start": period.period_start.isoformat(),
                "usage_amount": str(row.usage_amount),
            },
        )
    except PermanentBillingError as exc:
        row.status = WriteStatus.FAILED
        row.error = str(exc)[:2000]
        row.finished_at = now
        session.add(row)
        session.commit()
        return TopUp(usage_amount, wanted, 0, error=str(exc))
    row.stripe_invoice_item_id = item.stripe_invoice_item_id
    row.status = WriteStatus.DONE
    row.finished_at = now
    session.add(row)
    session.commit()
    total = int(
        session.exec(
            select(sa.func.coalesce(sa.func.sum(MinimumTopUp.amount), 0)).where(
                MinimumTopUp.org_id == org_id,
                MinimumTopUp.period_start_at == period.period_start,
                MinimumTopUp.status == WriteStatus.DONE,
            )
        ).one()
    )
    log.info(
        "minimum.topped_up",
        org_id=org_id,
        period=period.label(),
        amount=row.amount,
        usage_amount=row.usage_amount,
        stripe_invoice_id=row.stripe_invoice_id,
    )
    return TopUp(usage_amount, total, row.amount)

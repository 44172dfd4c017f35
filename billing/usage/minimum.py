"""The minimum commitment: a top-up line on the draft invoice when a month's usage is under it.

When a paid org's usage charge for a usage period is below its terms' `minimum_amount`, the
period's invoice must show the usage and, as a separate line, the difference (SPEC.md §2.2).
Once the period has ended and Stripe has drafted its invoice, the top-up is added to that draft
as an invoice item (`billing_kind=minimum_commitment`, which reconciliation matches with the
expected invoice's `minimum` line), computed from the same ledger totals the final usage push
sent. Later usage in the grace period changes the top-up by a correcting item, never by a
second full one. Each item is a `minimum_topups` row written before the Stripe call with a
deterministic key; a row a crash left `started` is sent again with its key.

If the invoice is already final (late usage, or the close missed the grace period), the top-up
or its correction becomes a pending item that Stripe puts on the next invoice, so nothing is
lost; it is then tagged `billing_kind=usage_adjustment` with `meter=minimum`, an adjustment of
the final period like the meters' own.

A subscription with the top-up's metered item reports the top-up as a meter event instead
(billing.usage.topup): only its final periods come here, with what their invoice's top-up line
billed counted as already booked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
import structlog
from sqlmodel import Session, select

from billing.core.components import BILLING_KIND, MINIMUM, BillingKind
from billing.core.keys import minimum_topup_key
from billing.core.meters import Meter
from billing.core.periods import Period
from billing.ledger.stripe_writes import write_to_stripe
from billing.pricing.book import Terms
from billing.pricing.charge import usage_lines
from billing.stripe_gateway.records import StripeInvoice, StripeInvoiceItem
from billing.usage.adjustments import AdjustmentGateway
from billing.usage.periods import OrgSubscription
from models.push_records import MinimumTopUp, UsagePeriod
from models.stripe_records import WriteStatus

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TopUp:
    usage_amount: int
    amount: int  # the total top-up now on the invoice
    changed_by: int  # what this run added (0 when already right)
    error: str | None = None


@dataclass(frozen=True)
class MinimumResult:
    period_start_at: datetime
    usage_amount: int
    top_up_amount: int  # the period's whole top-up now on Stripe
    changed_by: int  # added by this push (0 when it already was right)
    error: str | None = None


def period_minimums(
    session: Session,
    gateway: AdjustmentGateway,
    *,
    org_id: str,
    sub: OrgSubscription,
    terms: Terms,
    periods: Sequence[Period],
    invoices: Mapping[datetime, StripeInvoice],
    states: Mapping[tuple[str, datetime], UsagePeriod],
    period_totals: Mapping[datetime, Mapping[Meter, Decimal]],
    now: datetime,
    metered: Callable[[Period], int] | None = None,
) -> list[MinimumResult]:
    """The minimum-commitment top-up of every ended period Stripe has invoiced: on the draft
    during the grace period, pending for the next invoice once it is final. With `metered`
    (the subscription reports its top-up as a meter event: billing.usage.topup), only final
    periods, `metered(period)` being what the invoice's top-up line billed."""
    if terms.minimum_amount <= 0:
        return []
    found: list[MinimumResult] = []
    for period in periods:
        invoice = invoices.get(period.period_start)
        if period.period_end > now or invoice is None:
            continue  # not over yet, or Stripe has not drafted its invoice
        final = any(
            state.invoice_final_at is not None
            for (_, start), state in states.items()
            if start == period.period_start
        )
        if metered is not None and not final:
            continue  # sent with the meter events (billing.usage.topup)
        done = ensure_minimum(
            session,
            gateway,
            org_id=org_id,
            stripe_customer_id=sub.stripe_customer_id,
            stripe_subscription_id=sub.stripe_subscription_id,
            stripe_invoice_id=None if final else invoice.stripe_invoice_id,
            terms=terms,
            period=period,
            usage=period_totals.get(period.period_start, {}),
            now=now,
            booked=0 if metered is None else metered(period),
        )
        if done is not None:
            found.append(
                MinimumResult(
                    period.period_start, done.usage_amount, done.amount, done.changed_by, done.error
                )
            )
    return found


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
    booked: int = 0,
) -> TopUp | None:
    """Make the period's top-up equal `minimum − usage charge` (None: no minimum applies);
    `booked` is what Stripe billed for it otherwise (a meter's line), beside our items."""
    if terms.minimum_amount <= 0:
        return None
    usage_amount, wanted = minimum_top_up(terms, usage)
    row = _row_to_send(
        session,
        org_id,
        period,
        usage_amount,
        wanted - booked,
        stripe_invoice_id=stripe_invoice_id,
        now=now,
    )
    if row is None:
        return TopUp(usage_amount, wanted, 0)
    error = _send(
        session,
        gateway,
        row,
        stripe_customer_id=stripe_customer_id,
        stripe_subscription_id=stripe_subscription_id,
        terms=terms,
        period=period,
        now=now,
    )
    if error is not None:
        return TopUp(usage_amount, wanted, 0, error=error)
    total = _done_total(session, org_id, period) + booked
    log.info(
        "minimum.topped_up",
        org_id=org_id,
        period=period.label(),
        amount=row.amount,
        usage_amount=row.usage_amount,
        stripe_invoice_id=row.stripe_invoice_id,
    )
    return TopUp(usage_amount, total, row.amount)


def _done_total(session: Session, org_id: str, period: Period) -> int:
    """The period's top-up items Stripe has, in cents."""
    return int(
        session.exec(
            select(sa.func.coalesce(sa.func.sum(MinimumTopUp.amount), 0)).where(
                MinimumTopUp.org_id == org_id,
                MinimumTopUp.period_start_at == period.period_start,
                MinimumTopUp.status == WriteStatus.DONE,
            )
        ).one()
    )


def minimum_top_up(terms: Terms, usage: Mapping[Meter, Decimal]) -> tuple[int, int]:
    """(usage charge, top-up) of a period in cents: the top-up is `minimum − usage charge`,
    the usage charge being the terms' usage lines before credits (SPEC §2.2, §7)."""
    usage = {meter: quantity for meter, quantity in usage.items() if meter in terms.meters}
    lines = usage_lines(terms, usage)
    usage_amount = sum(line.amount for line in lines if line.code != MINIMUM)
    return usage_amount, max(0, terms.minimum_amount - usage_amount)


def _row_to_send(
    session: Session,
    org_id: str,
    period: Period,
    usage_amount: int,
    wanted: int,
    *,
    stripe_invoice_id: str | None,
    now: datetime,
) -> MinimumTopUp | None:
    """The item a crash left `started` (sent again as it is), else a new item for the
    difference between `wanted` and what is booked; None when nothing is to send."""
    rows = session.exec(
        select(MinimumTopUp).where(
            MinimumTopUp.org_id == org_id, MinimumTopUp.period_start_at == period.period_start
        )
    ).all()
    unfinished = next((row for row in rows if row.status == WriteStatus.STARTED), None)
    if unfinished is not None:
        return unfinished
    booked = sum(row.amount for row in rows if row.status == WriteStatus.DONE)
    if booked == wanted:
        return None
    sequence = 1 + max((row.sequence for row in rows), default=0)
    return MinimumTopUp(
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


def _send(
    session: Session,
    gateway: AdjustmentGateway,
    row: MinimumTopUp,
    *,
    stripe_customer_id: str,
    stripe_subscription_id: str,
    terms: Terms,
    period: Period,
    now: datetime,
) -> str | None:
    """Create the row's invoice item (on the draft, or pending for the next invoice) and
    complete the row; returns Stripe's error when it refused."""
    description = (
        f"Minimum commitment for {period.label()}: "
        f"{terms.minimum_amount} less usage {row.usage_amount}"
        if row.sequence == 1
        else f"Minimum commitment correction for {period.label()}"
    )
    amount, key, stripe_invoice_id = row.amount, row.idempotency_key, row.stripe_invoice_id
    metadata = {
        BILLING_KIND: BillingKind.MINIMUM_COMMITMENT.value,
        "org_id": row.org_id,
        "period_start": period.period_start.isoformat(),
        "usage_amount": str(row.usage_amount),
    }
    if stripe_invoice_id is None:
        # The period's invoice is final: the correction is late usage's, a line of its own on
        # the next invoice (SPEC §10 "Late usage"), beside the meters' adjustments.
        metadata[BILLING_KIND] = BillingKind.USAGE_ADJUSTMENT.value
        metadata["meter"] = MINIMUM

    def done(item: StripeInvoiceItem | None) -> None:
        assert item is not None
        row.stripe_invoice_item_id = item.stripe_invoice_item_id

    outcome = write_to_stripe(
        session,
        row,
        now,
        lambda: gateway.create_invoice_item(
            stripe_customer_id=stripe_customer_id,
            amount=amount,
            currency=terms.currency,
            description=description,
            idempotency_key=key,
            stripe_subscription_id=stripe_subscription_id,
            stripe_invoice_id=stripe_invoice_id,
            metadata=metadata,
        ),
        on_done=done,
    )
    return outcome.error

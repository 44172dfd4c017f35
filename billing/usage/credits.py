"""Credits reaching Stripe: one negative invoice item on each usage period's draft invoice for
what the org's credit grants pay of that period's usage charge.

The Stripe primitive, a decision (issue 14): a worker-computed credit line on the draft, exactly
like the minimum top-up (billing.usage.minimum), rather than Stripe's customer balance or its
billing credit grants:
- SPEC §10: a credit pays the usage charge (meter lines and minimum top-up), never seats. The
  customer balance applies to an invoice's whole amount due, seats included, and cannot be
  restricted to some lines.
- Billing credit grants (`client.v1.billing.credit_grants`, public preview) "only apply to
  subscription line items that link to a meter price" (Stripe's billing credits guide; the
  grant's scope takes `price_type=metered` only): they would not pay the minimum top-up, an
  invoice item the worker adds, and they would lower the metered lines the worker's minimum is
  compared with, breaking SPEC's "the minimum commitment is computed on the usage charge
  before credits".
- The invoice shows the credit as a line of its own (SPEC §10), tagged `billing_kind=credit`,
  which reconciliation matches with the expected invoice's `credit` line.
- The ledger decides every amount (billing.pricing.credits' allocation over the grants'
  balances of billing.ledger.credit_ledger), so reconciliation expects the credit exactly,
  from the same rules, with no Stripe state to read back.

Each item is a `credit_applications` row, with its split over the grants in
`credit_allocations`, committed `started` before the Stripe call with a deterministic key
(`credit:{org}:{period}:{n}`); a row a crash left `started` is sent again with its key (Stripe
replays it). Later usage in the grace period changes the credit by a correcting item, never a
second full one. A credit is applied only while the period's invoice is a draft: once it is
final, what it credited is history, and the balance stays for later periods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import structlog
from sqlmodel import Session, col, select

from billing.core.components import BILLING_KIND, BillingKind
from billing.core.keys import credit_application_key
from billing.core.meters import Meter
from billing.core.periods import Period
from billing.ledger.credit_ledger import grant_balances
from billing.ledger.stripe_writes import write_to_stripe
from billing.pricing.book import Terms
from billing.pricing.charge import usage_lines
from billing.pricing.credits import CreditShare, allocate_credits, credit_total
from billing.stripe_gateway.records import StripeInvoice, StripeInvoiceItem
from billing.usage.adjustments import AdjustmentGateway
from billing.usage.periods import OrgSubscription
from models.credits import CreditAllocation, CreditApplication
from models.push_records import UsagePeriod
from models.stripe_records import WriteStatus

log = structlog.get_logger(__name__)


class ClosingRun(Protocol):
    """What one usage push of an org found (billing.usage.push's run), read-only here."""

    @property
    def org_id(self) -> str: ...
    @property
    def now(self) -> datetime: ...
    @property
    def sub(self) -> OrgSubscription: ...
    @property
    def terms(self) -> Terms: ...
    @property
    def periods(self) -> Sequence[Period]: ...
    @property
    def invoices(self) -> Mapping[datetime, StripeInvoice]: ...
    @property
    def states(self) -> Mapping[tuple[str, datetime], UsagePeriod]: ...
    @property
    def period_totals(self) -> Mapping[datetime, Mapping[Meter, Decimal]]: ...


@dataclass(frozen=True)
class CreditResult:
    period_start_at: datetime
    charge_amount: int  # the period's usage charge before credits
    credit_amount: int  # the credit now on the period's draft
    changed_by: int  # added by this push (0 when it already was right)
    error: str | None = None


def period_credits(
    session: Session, gateway: AdjustmentGateway, run: ClosingRun
) -> list[CreditResult]:
    """The credit of every ended period whose invoice Stripe has drafted and not finalized."""
    found: list[CreditResult] = []
    for period in run.periods:
        invoice = run.invoices.get(period.period_start)
        if period.period_end > run.now or invoice is None or invoice.status != "draft":
            continue
        final = any(
            state.invoice_final_at is not None
            for (_, start), state in run.states.items()
            if start == period.period_start
        )
        if final or invoice.stripe_invoice_id is None:
            continue
        usage = run.period_totals.get(period.period_start, {})
        charged = usage_lines(run.terms, {m: q for m, q in usage.items() if m in run.terms.meters})
        result = ensure_credit(
            session,
            gateway,
            run,
            period=period,
            stripe_invoice_id=invoice.stripe_invoice_id,
            charge_amount=sum(line.amount for line in charged),
        )
        if result is not None:
            found.append(result)
    return found


def ensure_credit(
    session: Session,
    gateway: AdjustmentGateway,
    run: ClosingRun,
    *,
    period: Period,
    stripe_invoice_id: str,
    charge_amount: int,
) -> CreditResult | None:
    """Make the period's credit item(s) sum to what the grants pay of `charge_amount` (None:
    the org has no grant that could pay for this period, and nothing was ever applied)."""
    rows = session.exec(
        select(CreditApplication).where(
            CreditApplication.org_id == run.org_id,
            CreditApplication.period_start_at == period.period_start,
        )
    ).all()
    balances = grant_balances(session.connection(), period, run.org_id).get(run.org_id, [])
    if not balances and not rows:
        return None
    shares = allocate_credits(balances, period, charge_amount)
    wanted = credit_total(shares)
    row = next((row for row in rows if row.status == WriteStatus.STARTED), None)
    if row is None:
        row = _new_row(session, run, period, rows, shares, charge_amount, stripe_invoice_id)
    if row is None:
        return CreditResult(period.period_start, charge_amount, wanted, 0)
    error = _send(session, gateway, run, row, period)
    if error is not None:
        return CreditResult(period.period_start, charge_amount, wanted, 0, error)
    log.info(
        "credit.applied",
        org_id=run.org_id,
        period=period.label(),
        amount=row.amount,
        charge_amount=charge_amount,
        stripe_invoice_id=row.stripe_invoice_id,
    )
    return CreditResult(period.period_start, charge_amount, wanted, row.amount)


def _new_row(  # noqa: PLR0917 - one period's booked items and its wanted split
    session: Session,
    run: ClosingRun,
    period: Period,
    rows: Sequence[CreditApplication],
    shares: Sequence[CreditShare],
    charge_amount: int,
    stripe_invoice_id: str,
) -> CreditApplication | None:
    """An item for the difference between the wanted split and what is booked (the period's
    `done` items), its allocations added to the session; None when nothing differs."""
    done = [row.id for row in rows if row.status == WriteStatus.DONE]
    booked: dict[str, int] = {}
    if done:
        for allocation in session.exec(
            select(CreditAllocation).where(col(CreditAllocation.application_id).in_(done))
        ):
            booked[allocation.grant_id] = booked.get(allocation.grant_id, 0) + allocation.amount
    wanted = {share.grant_id: share.amount for share in shares}
    deltas = {
        grant_id: wanted.get(grant_id, 0) - booked.get(grant_id, 0)
        for grant_id in sorted(wanted.keys() | booked.keys())
    }
    deltas = {grant_id: delta for grant_id, delta in deltas.items() if delta}
    if not deltas:
        return None
    sequence = 1 + max((row.sequence for row in rows), default=0)
    row = CreditApplication(
        org_id=run.org_id,
        period_start_at=period.period_start,
        period_end_at=period.period_end,
        sequence=sequence,
        charge_amount=charge_amount,
        amount=sum(deltas.values()),
        stripe_invoice_id=stripe_invoice_id,
        idempotency_key=credit_application_key(run.org_id, period.period_start, sequence),
        status=WriteStatus.STARTED,
        created_at=run.now,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    for grant_id, delta in deltas.items():
        session.add(
            CreditAllocation(
                application_id=row.id, org_id=run.org_id, grant_id=grant_id, amount=delta
            )
        )
    return row


def _send(
    session: Session,
    gateway: AdjustmentGateway,
    run: ClosingRun,
    row: CreditApplication,
    period: Period,
) -> str | None:
    """Add the row's negative invoice item to the draft and complete the row (with its
    allocations, committed `started` first); returns Stripe's error when it refused."""
    description = (
        f"Credit applied to usage for {period.label()}"
        if row.sequence == 1
        else f"Credit correction for {period.label()}"
    )
    metadata = {
        BILLING_KIND: BillingKind.CREDIT.value,
        "org_id": row.org_id,
        "period_start": period.period_start.isoformat(),
        "charge_amount": str(row.charge_amount),
    }
    amount, key, stripe_invoice_id = -row.amount, row.idempotency_key, row.stripe_invoice_id

    def done(item: StripeInvoiceItem | None) -> None:
        if item is not None:
            row.stripe_invoice_item_id = item.stripe_invoice_item_id

    outcome = write_to_stripe(
        session,
        row,
        run.now,
        lambda: gateway.create_invoice_item(
            stripe_customer_id=run.sub.stripe_customer_id,
            amount=amount,
            currency=run.terms.currency,
            description=description,
            idempotency_key=key,
            stripe_subscription_id=run.sub.stripe_subscription_id,
            stripe_invoice_id=stripe_invoice_id,
            metadata=metadata,
        ),
        on_done=done,
    )
    return outcome.error

"""Late usage of an ended subscription is billed on a one-off invoice, never dropped (SPEC §10).

Usage dated before a cancellation that reaches the ledger after it becomes a late-usage
adjustment like any other (billing.usage.adjustments): a pending invoice item. A canceled org
has no next invoice to sweep it into, so the push then makes one: an invoice of the customer's
pending items (`pending_invoice_items_behavior=include`), tagged `billing_kind=
late_usage_after_end`, finalized at once (its amounts are known). Reconciliation expects its
adjustment lines from the ledger as it does on a cycle invoice. Both writes are
`subscription_endings` rows (`one_off`, then `finalize`), `started` before the call with a key
derived from the newest adjustment, `done` after; a second run finds them done.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from sqlmodel import Session, select

from billing.core.components import BILLING_KIND, BillingKind
from billing.core.keys import subscription_ending_key
from billing.ledger.stripe_writes import write_to_stripe
from billing.stripe_gateway.records import StripeInvoice
from billing.usage.periods import OrgSubscription
from models.lifecycle_records import SubscriptionEnding
from models.push_records import UsageAdjustment
from models.stripe_records import WriteStatus

HOW_ONE_OFF, HOW_FINALIZE = "one_off", "finalize"


class OneOffGateway(Protocol):
    def create_invoice(
        self,
        *,
        stripe_customer_id: str,
        description: str,
        idempotency_key: str,
        metadata: Mapping[str, str] | None = None,
    ) -> StripeInvoice: ...

    def finalize_invoice(
        self, stripe_invoice_id: str, *, idempotency_key: str
    ) -> StripeInvoice: ...


def invoice_after_end(
    session: Session, gateway: OneOffGateway, org_id: str, sub: OrgSubscription, now: datetime
) -> str | None:
    """Invoice the org's pending adjustments at once; the invoice id, or None when there is
    nothing new to invoice. Raises nothing for a refusal: it is recorded `failed`."""
    stripe_customer_id, stripe_subscription_id = sub.stripe_customer_id, sub.stripe_subscription_id
    newest = session.exec(
        select(sa.func.max(UsageAdjustment.id)).where(
            UsageAdjustment.org_id == org_id, UsageAdjustment.status == WriteStatus.DONE
        )
    ).one()
    if newest is None:
        return None
    invoice_id = _write(
        session,
        org_id,
        stripe_subscription_id,
        HOW_ONE_OFF,
        f"{newest}",
        now,
        lambda key: gateway.create_invoice(
            stripe_customer_id=stripe_customer_id,
            description="Usage that arrived after the subscription ended",
            idempotency_key=key,
            metadata={BILLING_KIND: BillingKind.LATE_USAGE_AFTER_END.value, "org_id": org_id},
        ),
    )
    if invoice_id is None:
        return None
    _write(
        session,
        org_id,
        stripe_subscription_id,
        HOW_FINALIZE,
        invoice_id,
        now,
        lambda key: gateway.finalize_invoice(invoice_id, idempotency_key=key),
    )
    return invoice_id


def _write(  # noqa: PLR0917 - one recorded write
    session: Session,
    org_id: str,
    stripe_subscription_id: str,
    how: str,
    subject: str,
    now: datetime,
    call: Callable[[str], StripeInvoice],
) -> str | None:
    """One write recorded before and after; the invoice id once done (None if refused)."""
    key = f"{subscription_ending_key(org_id, stripe_subscription_id, how, None)}:{subject}"
    row = session.exec(
        select(SubscriptionEnding).where(SubscriptionEnding.idempotency_key == key)
    ).first()
    if row is not None and row.status == WriteStatus.DONE:
        return row.stripe_final_invoice_id if how == HOW_ONE_OFF else None
    row = row or SubscriptionEnding(
        org_id=org_id,
        stripe_subscription_id=stripe_subscription_id,
        how=how,
        ends_at=now,
        status=WriteStatus.PENDING.value,
        idempotency_key=key,
        updated_at=now,
    )
    ending = row

    def done(invoice: StripeInvoice | None) -> None:
        if invoice is not None:
            ending.stripe_final_invoice_id = invoice.stripe_invoice_id

    outcome = write_to_stripe(session, row, now, lambda: call(key), on_done=done)
    return ending.stripe_final_invoice_id if outcome.error is None else None

"""The customer balance Stripe may apply to an invoice: our own credits carried forward.

When a plan change or a cancellation credits unused prepaid seat time beyond what the final
invoice charges (SPEC §10), that invoice's total is negative, and Stripe keeps the difference as
customer balance, applied to the customer's next invoices ("Invoices with a negative total
credit the customer's balance", https://docs.stripe.com/billing/customer/balance). Such a
balance is expected only as far as it comes from earlier invoices whose negative total the
ledger itself expected (their latest reconciliation `matched` or `rounding`), less what later
invoices already used. Any other balance (one granted by hand in the Dashboard) stays
`unexpected_in_stripe`.
"""

from __future__ import annotations

from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from billing.core.periods import isoformat_z
from billing.reconciliation.match import ExpectedCharge
from billing.stripe_gateway.records import StripeInvoice
from models.reconciliation import Reconciliation

_TRUSTED = frozenset({"matched", "rounding"})


class InvoiceLister(Protocol):
    def list_invoices(self, *, stripe_customer_id: str | None = None) -> list[StripeInvoice]: ...


def carried_credit(
    engine: Engine, gateway: InvoiceLister, invoice: StripeInvoice
) -> ExpectedCharge | None:
    """The balance expected on `invoice` (a negative amount), or None when Stripe applied none.
    Stripe is read first, then the database (no transaction waits on Stripe)."""
    applied = invoice.amount_due - invoice.total_amount
    if invoice.status in (None, "draft") or not applied or invoice.created_at is None:
        return None
    earlier = [
        other
        for other in gateway.list_invoices(stripe_customer_id=invoice.stripe_customer_id)
        if other.stripe_invoice_id != invoice.stripe_invoice_id
        and other.status not in (None, "draft", "void")
        and other.created_at is not None
        and (other.created_at, other.stripe_invoice_id or "")
        < (invoice.created_at, invoice.stripe_invoice_id or "")
    ]
    with Session(engine) as session:
        verdicts = _latest_statuses(session, [i.stripe_invoice_id or "" for i in earlier])
    credits = [
        other
        for other in earlier
        if other.total_amount < 0 and verdicts.get(other.stripe_invoice_id or "") in _TRUSTED
    ]
    credited = -sum(other.total_amount for other in credits)
    used = sum(other.total_amount - other.amount_due for other in earlier if other.total_amount > 0)
    available = max(0, credited - used)
    expected = -min(available, max(0, invoice.total_amount))
    steps = [
        f"{other.stripe_invoice_id} of {isoformat_z(other.created_at)} "  # type: ignore[arg-type]
        f"ended at {other.total_amount}¢ (reconciled)"
        for other in credits
    ]
    steps.append(f"{used}¢ of it used by earlier invoices: {available}¢ left")
    steps.append(f"applied here: {expected}¢ of the {invoice.total_amount}¢ total")
    return ExpectedCharge(
        expected, {"description": "customer balance from our credits", "steps": steps}
    )


def _latest_statuses(session: Session, invoice_ids: list[str]) -> dict[str, str]:
    if not invoice_ids:
        return {}
    latest = (
        sa.select(sa.func.max(col(Reconciliation.id)))
        .where(col(Reconciliation.stripe_invoice_id).in_(invoice_ids))
        .group_by(col(Reconciliation.stripe_invoice_id))
    )
    rows = session.exec(
        select(Reconciliation.stripe_invoice_id, Reconciliation.status).where(
            col(Reconciliation.id).in_(latest)
        )
    ).all()
    return dict(rows)

"""A renewal that Stripe drafted at the wrong seat count is corrected on its draft.

The seat sync sets the renewal quantity within the hour before a term ends, but a seat change in
the last seconds (or a worker running late) reaches Stripe after it renewed: the renewal draft
bills the old count. The ledger bills the count at the renewal instant (SPEC §4, §10). While the
draft is still open (Stripe finalizes it an hour after the renewal), the difference is added to
it as an invoice item of its own: `(count − billed) × unit` for the whole new term, tagged
`billing_kind=seat_renewal` with the seat difference in its metadata, so reconciliation counts
it with the seats. The subscription's quantity is then set by the seat sync as usual, without
proration (the term is now paid at the right count). Recorded before and after as a
`seat_pushes` row of kind `renewal_item`, with a deterministic key; safe to run twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from billing.core.components import BILLING_KIND, BillingKind
from billing.core.keys import seat_quantity_key
from billing.core.periods import isoformat_z
from billing.ledger.stripe_writes import write_to_stripe
from billing.stripe_gateway.ports import InvoiceItemWriter, InvoiceReader
from billing.stripe_gateway.records import StripeInvoice
from models.push_records import SeatPush, SeatPushKind
from models.stripe_records import WriteStatus

GRACE = timedelta(hours=1)  # Stripe finalizes a renewal draft an hour after it is created
SEAT_DELTA = "seat_delta"  # metadata: the seats the item adds to (or removes from) the renewal


class RenewalGateway(InvoiceReader, InvoiceItemWriter, Protocol):
    """The part of the gateway the renewal correction uses."""


@dataclass(frozen=True)
class RenewalTerm:
    """The term that just began, and what the ledger bills for it."""

    org_id: str
    term_start_at: datetime
    seat_count: int
    seat_unit_amount: int
    currency: str
    stripe_subscription_id: str
    stripe_seat_item_id: str


def correct_renewal_draft(
    engine: Engine, gateway: RenewalGateway, term: RenewalTerm, now: datetime
) -> str | None:
    """Add the missing (or surplus) seats to the term's renewal draft, if Stripe billed another
    count; what was done, for the sync's outcome, or None."""
    if not term.term_start_at <= now < term.term_start_at + GRACE:
        return None
    drafts = gateway.list_invoices(
        stripe_subscription_id=term.stripe_subscription_id,
        status="draft",
        created_from_at=term.term_start_at - timedelta(minutes=1),
    )
    draft = next((d for d in drafts if _renews(d, term.term_start_at)), None)
    if draft is None or draft.stripe_invoice_id is None:
        return None
    billed = billed_seats(draft, term.stripe_seat_item_id)
    delta = term.seat_count - billed
    if delta == 0:
        return None
    key = seat_quantity_key(term.org_id, term.term_start_at, "renewal_item", 1, term.seat_count)
    with Session(engine, expire_on_commit=False) as session:
        found = select(SeatPush).where(SeatPush.idempotency_key == key)
        row = session.exec(found).first() or SeatPush(
            org_id=term.org_id,
            kind=SeatPushKind.RENEWAL_ITEM.value,
            term_start_at=term.term_start_at,
            from_quantity=billed,
            to_quantity=term.seat_count,
            proration_behavior="none",
            expected_amount=delta * term.seat_unit_amount,
            stripe_subscription_item_id=term.stripe_seat_item_id,
            idempotency_key=key,
            status=WriteStatus.PENDING.value,
            created_at=now,
        )
        if row.status == WriteStatus.DONE:
            return None
        outcome = write_to_stripe(
            session,
            row,
            now,
            lambda: gateway.create_invoice_item(
                stripe_customer_id=draft.stripe_customer_id,
                amount=delta * term.seat_unit_amount,
                currency=term.currency,
                description=f"Seats at renewal: {billed} → {term.seat_count}",
                idempotency_key=key,
                stripe_subscription_id=term.stripe_subscription_id,
                stripe_invoice_id=draft.stripe_invoice_id,
                metadata={
                    BILLING_KIND: BillingKind.SEAT_RENEWAL.value,
                    SEAT_DELTA: str(delta),
                    "org_id": term.org_id,
                    "term_start": isoformat_z(term.term_start_at),
                },
            ),
        )
    if outcome.error:
        return f"the renewal draft could not be corrected: {outcome.error}"
    return f"renewal draft {draft.stripe_invoice_id} billed {billed} seats: {delta:+d} added"


def billed_seats(invoice: StripeInvoice, stripe_seat_item_id: str) -> int:
    """The seats an invoice bills for its new term: the seat item's renewal line and any
    `seat_renewal` corrections already on it."""
    total = Decimal(0)
    for line in invoice.lines:
        if line.metadata.get(BILLING_KIND) == BillingKind.SEAT_RENEWAL.value:
            total += Decimal(line.metadata.get(SEAT_DELTA, "0"))
        elif line.stripe_subscription_item_id == stripe_seat_item_id and not line.proration:
            total += line.quantity_decimal or Decimal(0)
    return int(total)


def _renews(invoice: StripeInvoice, term_start_at: datetime) -> bool:
    end = invoice.period_end_at
    return (
        invoice.billing_reason == "subscription_cycle"
        and end is not None
        and abs(end - term_start_at) <= timedelta(minutes=1)
    )

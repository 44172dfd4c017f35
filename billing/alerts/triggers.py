"""What raises an alert: one function per event, each called (one line) where the event is
recorded, with that record's session.

- a draft held because it disagrees with the ledger (`note_reconciliation`);
- a final invoice that reconciled `mismatched`, `missing_in_stripe` or `unexpected_in_stripe`
  (`note_reconciliation`);
- a Stripe write refused for good: a meter event, an adjustment, a top-up, a seat push or a
  provisioning call (`note_failed_write`);
- a Stripe price that drifted from the book (`note_price_drift`).
The late month close is watched by billing.alerts.close.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from billing.alerts.records import AlertKind, NewAlert, raise_alert
from billing.core.money import format_minor_units
from models.credits import CreditApplication
from models.lifecycle_records import SubscriptionEnding
from models.push_records import MinimumTopUp, SeatPush, UsageAdjustment, UsagePush
from models.reconciliation import Reconciliation, ReconciliationLine
from models.stripe_records import StripeCustomerRecord, StripeSubscriptionRecord

# The reconciliation statuses that make a final invoice worth an alert.
WRONG_STATUSES = frozenset({"mismatched", "missing_in_stripe", "unexpected_in_stripe"})
# Invoice statuses after finalization (a void invoice bills nothing: no alert).
FINAL_INVOICE_STATUSES = frozenset({"open", "paid", "uncollectible"})
_LINES_SHOWN = 10

FailedWrite = (
    StripeCustomerRecord
    | StripeSubscriptionRecord
    | SeatPush
    | UsagePush
    | UsageAdjustment
    | MinimumTopUp
    | SubscriptionEnding
    | CreditApplication
)
_WRITE_NAMES: Mapping[type[Any], str] = {
    StripeCustomerRecord: "customer creation",
    StripeSubscriptionRecord: "subscription creation",
    SeatPush: "seat quantity update",
    UsagePush: "meter event",
    UsageAdjustment: "late-usage adjustment",
    MinimumTopUp: "minimum top-up",
    SubscriptionEnding: "subscription cancellation",
    CreditApplication: "credit on an invoice",
}


def note_reconciliation(session: Session, rec: Reconciliation) -> bool:
    """After a reconciliation row (and its lines) is added: alert on a held draft, or on a
    final invoice found wrong. Whether an alert was added."""
    if rec.held:
        kind, subject = AlertKind.HELD_DRAFT, rec.stripe_invoice_id
        what = f"Draft invoice {rec.stripe_invoice_id} was held ({rec.status})"
    elif rec.invoice_status in FINAL_INVOICE_STATUSES and rec.status in WRONG_STATUSES:
        kind, subject = AlertKind.WRONG_FINAL_INVOICE, rec.stripe_invoice_id
        what = f"Final invoice {rec.stripe_invoice_id} ({rec.invoice_status}) is {rec.status}"
    else:
        return False
    difference = rec.stripe_total_amount - rec.expected_total_amount
    summary = (
        f"{what} for org {rec.org_id or '(unknown customer ' + rec.stripe_customer_id + ')'}: "
        f"Stripe {format_minor_units(rec.stripe_total_amount, rec.currency)}, ledger "
        f"{format_minor_units(rec.expected_total_amount, rec.currency)}, difference "
        f"{format_minor_units(difference, rec.currency)}"
    )
    details = {
        "status": rec.status,
        "invoice_status": rec.invoice_status,
        "period": rec.period,
        "expected_total_amount": rec.expected_total_amount,
        "stripe_total_amount": rec.stripe_total_amount,
        "note": rec.note,
        "lines": _differing_lines(session, rec),
    }
    alert = NewAlert(
        kind,
        subject,
        summary,
        details,
        org_id=rec.org_id,
        stripe_invoice_id=rec.stripe_invoice_id,
        reconciliation_id=rec.id,
        difference_amount=difference,
        currency=rec.currency,
    )
    return raise_alert(session, alert, rec.created_at)


def note_failed_write(session: Session, row: FailedWrite, now: datetime) -> bool:
    """After a Stripe write's row is marked `failed`: alert once per write (its key)."""
    name = _WRITE_NAMES[type(row)]
    key = row.identifier if isinstance(row, UsagePush) else row.idempotency_key
    details: dict[str, Any] = {"write": name, "idempotency_key": key, "error": row.error}
    if isinstance(row, UsagePush | UsageAdjustment):
        details.update(meter=row.meter, period_start_at=row.period_start_at.isoformat())
    summary = f"Stripe refused a {name} for org {row.org_id} for good: {row.error or '?'}"
    alert = NewAlert(AlertKind.PUSH_FAILED, key, summary, details, org_id=row.org_id)
    return raise_alert(session, alert, now)


def note_price_drift(
    session: Session, book: str, findings: Iterable[Mapping[str, Any]], now: datetime
) -> int:
    """After a price check is added: one alert per drifted price (catalog key and Stripe
    price), however many checks find it again. How many alerts were added."""
    added = 0
    for finding in findings:
        price_id = finding.get("stripe_price_id") or "none"
        subject = f"{book}:{finding.get('catalog_key')}:{price_id}"
        summary = (
            f"Stripe price {price_id} ({finding.get('catalog_key')}) drifted from the "
            f"{book} book: {finding.get('note')}"
        )
        added += raise_alert(
            session, NewAlert(AlertKind.PRICE_DRIFT, subject, summary, finding), now
        )
    return added


def _differing_lines(session: Session, rec: Reconciliation) -> list[dict[str, Any]]:
    rows = session.exec(
        select(ReconciliationLine)
        .where(
            ReconciliationLine.reconciliation_id == rec.id,
            col(ReconciliationLine.status) != "matched",
        )
        .order_by(col(ReconciliationLine.position))
        .limit(_LINES_SHOWN)
    ).all()
    return [
        {
            "component": line.component,
            "status": line.status,
            "expected_amount": line.expected_amount,
            "stripe_amount": line.stripe_amount,
            "difference_amount": line.difference_amount,
        }
        for line in rows
    ]

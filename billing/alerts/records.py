"""An alert raised once per subject, inside the caller's transaction, and the kinds there are.

The workflows call `raise_alert` with the session that records the event itself (the held
draft's reconciliation, the failed write's row, the price check), so the alert exists exactly
when the event does: a rolled-back event leaves no alert, and a committed one cannot lose it.
`subject_key` is unique in the table; the insert does nothing when the subject already has an
alert (INSERT … ON CONFLICT DO NOTHING on both databases), so seeing the same held draft on every
sweep, or two workers seeing it at once, still makes one alert and never fails the caller.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from models.alerts import Alert, AlertDelivery


class AlertKind(StrEnum):
    """Why an alert was raised (its subject key starts with the kind)."""

    HELD_DRAFT = "held_draft"  # a draft disagreed with the ledger and was held
    WRONG_FINAL_INVOICE = "wrong_final_invoice"  # a final invoice reconciled wrong
    PUSH_FAILED = "push_failed"  # Stripe refused a write for good
    PRICE_DRIFT = "price_drift"  # a Stripe price no longer says what the book says
    CLOSE_LATE = "close_late"  # the month close had not finished 30 min into the grace period


@dataclass(frozen=True)
class NewAlert:
    """What an alert says; `subject` is what it is about (the kind is prefixed to it)."""

    kind: AlertKind
    subject: str
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)
    org_id: str | None = None
    stripe_invoice_id: str | None = None
    reconciliation_id: int | None = None
    difference_amount: int | None = None
    currency: str | None = None

    @property
    def subject_key(self) -> str:
        return f"{self.kind.value}:{self.subject}"[:255]


def raise_alert(session: Session, alert: NewAlert, now: datetime) -> bool:
    """Add `alert` to the session's transaction unless its subject has one already; whether
    this call added it. The caller commits (or rolls back) it with its own event."""
    values = {
        "subject_key": alert.subject_key,
        "kind": alert.kind.value,
        "org_id": alert.org_id,
        "stripe_invoice_id": alert.stripe_invoice_id,
        "reconciliation_id": alert.reconciliation_id,
        "difference_amount": alert.difference_amount,
        "currency": alert.currency,
        "summary": alert.summary,
        "details_json": json.dumps(dict(alert.details), default=str, sort_keys=True),
        "created_at": now,
        "delivery": AlertDelivery.PENDING.value,
        "attempts": 0,
    }
    result: sa.CursorResult[Any] = session.connection().execute(
        insert_ignoring_conflicts(session, Alert)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["subject_key"])
        .returning(sa.column("id"))
    )
    return result.first() is not None  # rowcount is not reliable here on every driver


def insert_ignoring_conflicts(
    session: Session, model: type[Any]
) -> postgresql.Insert | sqlite.Insert:
    """An INSERT of `model`'s table in the session's dialect, which can skip conflicting rows."""
    table = model.__table__
    assert isinstance(table, sa.Table)
    if session.connection().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)

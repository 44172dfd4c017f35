"""Reconciliation records: append-only results and lines, the webhook inbox, price checks."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.ledger import ExactDecimal, UtcDateTime


def _id() -> Any:
    return sa.Column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )


def _at(**kwargs: Any) -> Any:
    return Field(sa_type=UtcDateTime, **kwargs)


class Reconciliation(SQLModel, table=True):
    """One comparison of one Stripe invoice with the ledger; re-reconciling appends a new row."""

    __tablename__ = "reconciliations"

    id: int | None = Field(default=None, sa_column=_id())
    stripe_invoice_id: str = Field(max_length=255, index=True)
    stripe_customer_id: str = Field(max_length=255)
    org_id: str | None = Field(default=None, max_length=200, index=True)
    invoice_status: str | None = Field(default=None, max_length=20)
    billing_reason: str | None = Field(default=None, max_length=50)
    # The usage period compared (`YYYY-MM` in `period` for a calendar month), if any.
    period: str | None = Field(default=None, max_length=100, index=True)
    period_start_at: datetime | None = _at(default=None)
    period_end_at: datetime | None = _at(default=None)
    currency: str = Field(max_length=10)
    status: str = Field(max_length=30, index=True)  # billing.reconciliation.match.Status
    expected_total_amount: int
    stripe_total_amount: int
    trigger: str = Field(max_length=50)  # invoice.created | invoice.finalized | sweep | cli
    held: bool = False  # auto_advance was set to false on the draft
    note: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = _at()


class ReconciliationLine(SQLModel, table=True):
    """One component of a reconciliation: both sides, the verdict and the explanation trace."""

    __tablename__ = "reconciliation_lines"

    id: int | None = Field(default=None, sa_column=_id())
    reconciliation_id: int = Field(foreign_key="reconciliations.id", index=True)
    position: int
    component: str = Field(max_length=100)  # seats, seat_proration, a meter, minimum, ...
    status: str = Field(max_length=30)
    expected_quantity: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    expected_amount: int | None = None
    stripe_quantity: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    stripe_amount: int | None = None
    difference_amount: int = 0  # stripe - expected, minor units
    explanation: str = Field(sa_type=sa.Text)
    trace_json: str = Field(sa_type=sa.Text)


class WebhookEvent(SQLModel, table=True):
    """The Stripe webhook inbox: one row per Stripe event id, so a redelivery is dropped."""

    __tablename__ = "stripe_webhook_events"
    __table_args__ = (
        # The periodic re-drive reads the events not handled yet, by age.
        sa.Index(
            "ix_stripe_webhook_events_unhandled",
            "received_at",
            postgresql_where=sa.text("handled_at IS NULL"),
            sqlite_where=sa.text("handled_at IS NULL"),
        ),
    )

    stripe_event_id: str = Field(primary_key=True, max_length=255)
    type: str = Field(max_length=100)
    stripe_object_id: str | None = Field(default=None, max_length=255)
    payload_json: str = Field(sa_type=sa.Text)
    stripe_created_at: datetime | None = _at(default=None)
    received_at: datetime = _at()
    handled_at: datetime | None = _at(default=None)
    outcome: str | None = Field(default=None, sa_type=sa.Text)
    attempts: int = 0


class PriceCheck(SQLModel, table=True):
    """One read-only comparison of Stripe's prices with the price book (findings as JSON)."""

    __tablename__ = "price_checks"

    id: int | None = Field(default=None, sa_column=_id())
    book: str = Field(max_length=200)
    checked_at: datetime = _at()
    verified_count: int
    drift_count: int
    findings_json: str = Field(sa_type=sa.Text)

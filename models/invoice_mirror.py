"""A local mirror of Stripe's invoices (fed by webhooks and account-wide sweeps), and the sweeps.

No business rules here: which mirrored answer may be trusted, and when, is
billing.usage.invoice_mirror's to decide.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.ledger import UtcDateTime


class MirrorSource(StrEnum):
    """Where a mirrored invoice state came from."""

    WEBHOOK = "webhook"  # an invoice.* event's `data.object`
    SWEEP = "sweep"  # an account-wide `GET /v1/invoices` listing


class StripeInvoiceMirror(SQLModel, table=True):
    """The newest known state of one Stripe invoice.

    `status_rank` orders Stripe's one-way invoice states (draft 0 < open 1 < paid, void,
    uncollectible 2); a state replaces the stored one only when its rank is higher, or equal
    and observed no earlier (`stripe_observed_at`: the event's `created`, or the sweep's
    instant). `lines_json` holds every line the push reads (subscription item, price, period,
    quantity, amount, proration); `lines_complete` is false when Stripe sent only the first
    lines of a longer list (a webhook payload) and nobody fetched the rest.
    """

    __tablename__ = "stripe_invoices"
    __table_args__ = (
        sa.Index("ix_stripe_invoices_subscription_created", "stripe_subscription_id", "created_at"),
    )

    stripe_invoice_id: str = Field(primary_key=True, max_length=255)
    stripe_customer_id: str = Field(max_length=255)
    stripe_subscription_id: str | None = Field(default=None, max_length=255)
    status: str = Field(max_length=20)
    status_rank: int
    billing_reason: str | None = Field(default=None, max_length=50)
    currency: str = Field(max_length=10)
    subtotal_amount: int
    total_amount: int
    amount_due: int
    auto_advance: bool | None = None
    created_at: datetime = Field(sa_type=UtcDateTime)
    period_start_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    period_end_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    lines_json: str = Field(sa_type=sa.Text)
    lines_complete: bool
    metadata_json: str = Field(sa_type=sa.Text)
    source: str = Field(max_length=10)  # a MirrorSource
    stripe_observed_at: datetime = Field(sa_type=UtcDateTime)
    synced_at: datetime = Field(sa_type=UtcDateTime)


class StripeInvoiceSweep(SQLModel, table=True):
    """One account-wide listing of the invoices created since `created_from_at`.

    Once `finished_at` is set, every invoice Stripe had created in
    `[created_from_at, started_at)` is in the mirror, in a state no older than `started_at`.
    """

    __tablename__ = "stripe_invoice_sweeps"

    id: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
    )
    created_from_at: datetime = Field(sa_type=UtcDateTime)
    started_at: datetime = Field(sa_type=UtcDateTime, index=True)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    invoice_count: int = 0
    page_requests: int = 0
    line_requests: int = 0  # invoices whose lines Stripe had cut at 10, fetched whole
    # A sweep runs in steps (the month close's: one task each, a few dozen pages). `step`
    # counts the steps done and `cursor` is where the next one starts (None: the first page);
    # a step saves its progress only if `step` is still the one it started from, so a second
    # delivery of a step (or of the close) never runs a sweep twice side by side.
    step: int = 0
    cursor: str | None = Field(default=None, max_length=255)

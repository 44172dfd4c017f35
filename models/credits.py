"""Credit tables: the grants of each org, and the credit items applied to its invoices.

`credit_grants` is append-only ledger input (a `credit` event, a CLI grant, a book's welcome
credit), keyed by (org, id) as usage events are. `credit_applications` records each credit
invoice item the worker adds to a period's draft, as `minimum_topups` does for the minimum: a
row `started` with a deterministic idempotency key before the Stripe call, `done` with the
item's id after; a correction of the period is a new row (sequence + 1) for the difference.
`credit_allocations` split each application among the grants that pay it, so each grant's
balance is its amount less its allocations (what support sees as applied and remaining).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.ledger import UtcDateTime


def _id() -> sa.Column[int]:
    return sa.Column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )


class CreditGrant(SQLModel, table=True):
    """A credit of `amount` cents to the org from `at` on, usable until `expires_at` (if any)."""

    __tablename__ = "credit_grants"
    __table_args__ = (sa.UniqueConstraint("org_id", "grant_id", name="uq_credit_grants_org_id"),)

    id: int | None = Field(default=None, sa_column=_id())
    org_id: str = Field(foreign_key="orgs.id", max_length=200)
    grant_id: str = Field(max_length=200)  # the event's id; `welcome:{org}` for the book's
    amount: int  # cents, > 0
    at: datetime = Field(sa_type=UtcDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    reason: str = Field(max_length=500)
    recorded_at: datetime = Field(sa_type=UtcDateTime)


class CreditApplication(SQLModel, table=True):
    """A credit invoice item on a period's draft invoice (or a correction of one)."""

    __tablename__ = "credit_applications"
    __table_args__ = (
        sa.UniqueConstraint("org_id", "period_start_at", "sequence", name="uq_credit_applications"),
    )

    id: int | None = Field(default=None, sa_column=_id())
    org_id: str = Field(max_length=200, index=True)
    period_start_at: datetime = Field(sa_type=UtcDateTime)
    period_end_at: datetime = Field(sa_type=UtcDateTime)
    sequence: int
    charge_amount: int  # the period's usage charge before credits the credit was computed on
    amount: int  # credit applied by this item (> 0; a correction may be negative)
    stripe_invoice_id: str = Field(max_length=100)
    idempotency_key: str = Field(max_length=255, unique=True)
    stripe_invoice_item_id: str | None = Field(default=None, max_length=100)
    status: str = Field(max_length=10)  # a models.stripe_records.WriteStatus
    error: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(sa_type=UtcDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class CreditAllocation(SQLModel, table=True):
    """The part of one application paid by one grant (the parts sum to the application)."""

    __tablename__ = "credit_allocations"
    __table_args__ = (
        sa.UniqueConstraint("application_id", "grant_id", name="uq_credit_allocations"),
    )

    id: int | None = Field(default=None, sa_column=_id())
    application_id: int = Field(foreign_key="credit_applications.id", index=True)
    org_id: str = Field(max_length=200, index=True)
    grant_id: str = Field(max_length=200)
    amount: int

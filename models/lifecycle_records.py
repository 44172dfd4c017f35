"""Records of the Stripe writes that end an org's subscription (SPEC §10).

One row per ending of one Stripe subscription: `how` is `now` (cancelled at once with
`invoice_now`, at a plan change or a cancellation with `when=now`) or `cancel_at` (Stripe ends
it itself at `ends_at`: a cancellation at term end or a downgrade scheduled for the term end);
`withdraw` clears a `cancel_at` that a later event withdrew. Each row is written `started`
before the call, with its deterministic idempotency key, and `done` or `failed` after it.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.ledger import UtcDateTime


class SubscriptionEnding(SQLModel, table=True):
    __tablename__ = "subscription_endings"
    __table_args__ = (
        sa.UniqueConstraint("idempotency_key", name="uq_subscription_endings_key"),
        sa.Index("ix_subscription_endings_org", "org_id", "ends_at"),
    )

    id: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
    )
    org_id: str = Field(max_length=200)
    stripe_subscription_id: str = Field(max_length=255)
    how: str = Field(max_length=10)  # now | cancel_at | withdraw
    ends_at: datetime = Field(sa_type=UtcDateTime)
    prorate: bool = False
    status: str = Field(max_length=10)  # a WriteStatus
    idempotency_key: str = Field(max_length=255)
    stripe_final_invoice_id: str | None = Field(default=None, max_length=255)
    error: str | None = Field(default=None, sa_type=sa.Text)
    started_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)

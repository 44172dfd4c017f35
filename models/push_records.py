"""Local records of the worker's Stripe side effects: seat pushes, usage pushes, adjustments.

Every Stripe write is a row here first (status `started`, with its deterministic idempotency
key), then updated with the outcome (`done` or `failed`): a `WriteStatus`, like the customer and
subscription records of models.stripe_records. A row left `started` by a crash is
resolved by reading Stripe (seats) or by re-sending the identical request (usage), never by
inventing a new one.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.ledger import ExactDecimal, UtcDateTime


class SeatPushKind(StrEnum):
    """Why a seat push changed Stripe's quantity."""

    STEP = "step"  # a coalesced seat step of the term, prorated as the seat policy says
    RENEWAL = "renewal"  # the count at the renewal instant, set just before the term ends
    CORRECTION = "correction"  # Stripe held another quantity (changed by hand): set back
    RENEWAL_ITEM = "renewal_item"  # a renewal drafted at another count: the difference added


def _id() -> sa.Column[int]:
    return sa.Column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )


class SeatPush(SQLModel, table=True):
    """One Stripe quantity update of an org's seat item."""

    __tablename__ = "seat_pushes"

    id: int | None = Field(default=None, sa_column=_id())
    org_id: str = Field(max_length=200, index=True)
    kind: str = Field(max_length=20)  # a SeatPushKind
    term_start_at: datetime = Field(sa_type=UtcDateTime)
    window_start_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    proration_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    from_quantity: int
    to_quantity: int
    proration_behavior: str = Field(max_length=30)
    expected_amount: int  # the local model's charge for this step, in minor units
    stripe_subscription_item_id: str = Field(max_length=100)
    idempotency_key: str = Field(max_length=255, unique=True)
    status: str = Field(max_length=10)  # a models.stripe_records.WriteStatus
    error: str | None = Field(default=None, max_length=2000)
    stripe_request_id: str | None = Field(default=None, max_length=100)
    created_at: datetime = Field(sa_type=UtcDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class UsagePeriod(SQLModel, table=True):
    """Per org, meter and usage period: what the ledger says, what was sent, what Stripe has."""

    __tablename__ = "usage_periods"
    __table_args__ = (
        sa.UniqueConstraint("org_id", "meter", "period_start_at", name="uq_usage_periods"),
    )

    id: int | None = Field(default=None, sa_column=_id())
    org_id: str = Field(max_length=200, index=True)
    meter: str = Field(max_length=100)
    period_start_at: datetime = Field(sa_type=UtcDateTime)
    period_end_at: datetime = Field(sa_type=UtcDateTime)
    ledger_quantity: Decimal = Field(sa_type=ExactDecimal)  # at the last push run
    sent_quantity: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    sent_revision: int = 0
    sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    confirmed_quantity: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    confirmed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    # Set once the period's Stripe invoice is final: later usage becomes an adjustment.
    invoice_final_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    stripe_invoice_id: str | None = Field(default=None, max_length=100)
    invoiced_quantity: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    adjusted_quantity: Decimal = Field(default=Decimal(0), sa_type=ExactDecimal)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class UsagePush(SQLModel, table=True):
    """One meter event: the cumulative period total at a revision (the audit trail)."""

    __tablename__ = "usage_pushes"
    __table_args__ = (
        sa.UniqueConstraint(
            "org_id", "meter", "period_start_at", "revision", name="uq_usage_pushes_revision"
        ),
    )

    id: int | None = Field(default=None, sa_column=_id())
    org_id: str = Field(max_length=200, index=True)
    meter: str = Field(max_length=100)
    period_start_at: datetime = Field(sa_type=UtcDateTime)
    revision: int
    quantity: Decimal = Field(sa_type=ExactDecimal)
    identifier: str = Field(max_length=255, unique=True)  # meter event identifier = idem. key
    event_timestamp_at: datetime = Field(sa_type=UtcDateTime)
    status: str = Field(max_length=10)  # a models.stripe_records.WriteStatus
    error: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(sa_type=UtcDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class UsageAdjustment(SQLModel, table=True):
    """Usage that arrived after its period's invoice was final, billed on the next invoice."""

    __tablename__ = "usage_adjustments"
    __table_args__ = (
        sa.UniqueConstraint(
            "org_id", "meter", "period_start_at", "sequence", name="uq_usage_adjustments_sequence"
        ),
    )

    id: int | None = Field(default=None, sa_column=_id())
    org_id: str = Field(max_length=200, index=True)
    meter: str = Field(max_length=100)
    period_start_at: datetime = Field(sa_type=UtcDateTime)
    sequence: int
    quantity_delta: Decimal = Field(sa_type=ExactDecimal)
    amount: int  # minor units: priced difference of the period's meter line
    idempotency_key: str = Field(max_length=255, unique=True)
    stripe_invoice_item_id: str | None = Field(default=None, max_length=100)
    status: str = Field(max_length=10)  # a models.stripe_records.WriteStatus
    error: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(sa_type=UtcDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class MinimumTopUp(SQLModel, table=True):
    """A minimum-commitment top-up added to a period's draft invoice (or a correction of one)."""

    __tablename__ = "minimum_topups"
    __table_args__ = (
        sa.UniqueConstraint("org_id", "period_start_at", "sequence", name="uq_minimum_topups"),
    )

    id: int | None = Field(default=None, sa_column=_id())
    org_id: str = Field(max_length=200, index=True)
    period_start_at: datetime = Field(sa_type=UtcDateTime)
    sequence: int
    usage_amount: int  # the period's usage charge the top-up was computed from
    amount: int  # this item's amount (a correction may be negative)
    stripe_invoice_id: str | None = Field(default=None, max_length=100)
    idempotency_key: str = Field(max_length=255, unique=True)
    stripe_invoice_item_id: str | None = Field(default=None, max_length=100)
    status: str = Field(max_length=10)  # a models.stripe_records.WriteStatus
    error: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(sa_type=UtcDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)

"""Local records of Stripe objects: catalog (products, meters, prices), customers, subscriptions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.ledger import UtcDateTime


class WriteStatus(StrEnum):
    """Where a Stripe write stands: recorded before the call, then after it.

    The one status of every record around a Stripe write: the customers and subscriptions here,
    the seat pushes, meter events, adjustments and minimum top-ups of models.push_records.
    """

    PENDING = "pending"  # row exists, no call made yet
    STARTED = "started"  # the call may or may not have reached Stripe
    DONE = "done"  # Stripe's answer is recorded
    FAILED = "failed"  # Stripe refused permanently; `error` says why


class CatalogKind(StrEnum):
    PRODUCT = "product"
    METER = "meter"
    PRICE = "price"


def _id_column() -> Any:
    return sa.Column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )


def _at(**kwargs: Any) -> Any:
    return Field(sa_type=UtcDateTime, **kwargs)


class StripeCatalogEntry(SQLModel, table=True):
    """One product, meter or price the price book implies, with its Stripe id and synced terms.

    `catalog_key` names the object independently of Stripe (e.g. `devtools:team:seats:year`);
    `version` grows when a drifted price is replaced, and `lookup_key` carries it.
    """

    __tablename__ = "stripe_catalog_entries"
    __table_args__ = (sa.UniqueConstraint("catalog_key", name="uq_stripe_catalog_entries_key"),)

    id: int | None = Field(default=None, sa_column=_id_column())
    catalog_key: str = Field(max_length=255)
    kind: str = Field(max_length=10)
    book: str = Field(max_length=200)
    plan: str | None = Field(default=None, max_length=100)
    interval: str | None = Field(default=None, max_length=10)
    meter: str | None = Field(default=None, max_length=100)
    contract_org_id: str | None = Field(default=None, max_length=200)
    version: int = 1
    lookup_key: str | None = Field(default=None, max_length=255)
    stripe_product_id: str | None = Field(default=None, max_length=255)
    stripe_meter_id: str | None = Field(default=None, max_length=255)
    stripe_price_id: str | None = Field(default=None, max_length=255)
    terms_json: str | None = Field(default=None, sa_type=sa.Text)  # terms as synced (exact)
    approximate: bool = False  # the Stripe unit price is the book's price rounded to 12 places
    synced_at: datetime = _at()


class StripeCustomerRecord(SQLModel, table=True):
    """The org's Stripe customer and the status of the write that creates it."""

    __tablename__ = "stripe_customers"

    org_id: str = Field(primary_key=True, max_length=200)
    status: str = Field(max_length=10)  # a WriteStatus
    idempotency_key: str = Field(max_length=255)
    stripe_customer_id: str | None = Field(default=None, max_length=255, unique=True)
    stripe_test_clock_id: str | None = Field(default=None, max_length=255)
    error: str | None = Field(default=None, sa_type=sa.Text)
    started_at: datetime | None = _at(default=None)
    updated_at: datetime = _at()


class StripeSubscriptionRecord(SQLModel, table=True):
    """The org's one Stripe subscription (seats plus metered items) and its write status."""

    __tablename__ = "stripe_subscriptions"

    org_id: str = Field(primary_key=True, max_length=200)
    status: str = Field(max_length=10)  # a WriteStatus
    idempotency_key: str = Field(max_length=255)
    book: str = Field(max_length=200)
    plan: str = Field(max_length=100)
    interval: str = Field(max_length=10)
    term_start_at: datetime = _at()
    stripe_customer_id: str | None = Field(default=None, max_length=255)
    stripe_subscription_id: str | None = Field(default=None, max_length=255, unique=True)
    error: str | None = Field(default=None, sa_type=sa.Text)
    started_at: datetime | None = _at(default=None)
    updated_at: datetime = _at()


class StripeSubscriptionItemRecord(SQLModel, table=True):
    """One item of the org's subscription: `component` is `seats` or a meter code."""

    __tablename__ = "stripe_subscription_items"
    __table_args__ = (
        sa.UniqueConstraint("org_id", "component", name="uq_stripe_subscription_items_component"),
    )

    id: int | None = Field(default=None, sa_column=_id_column())
    org_id: str = Field(max_length=200, index=True)
    component: str = Field(max_length=100)
    stripe_subscription_id: str = Field(max_length=255)
    stripe_subscription_item_id: str = Field(max_length=255, unique=True)
    stripe_price_id: str = Field(max_length=255)
    interval: str = Field(max_length=10)
    quantity: int | None = None
    current_period_start_at: datetime | None = _at(default=None)
    current_period_end_at: datetime | None = _at(default=None)
    updated_at: datetime = _at()

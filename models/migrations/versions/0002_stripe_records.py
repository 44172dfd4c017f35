"""Stripe records: catalog objects, customers, subscriptions and items.

Revision ID: 0002_stripe_records
Revises: 0001_ledger
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_stripe_records"
down_revision: str | None = "0001_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Hand-written to match models/stripe_records.py; types spelled out so this revision never
# changes when the models do. Org ids are text with no foreign key to the ledger's tables.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def _stripe_id(name: str, *, nullable: bool = True) -> sa.Column[str]:
    return sa.Column(name, sa.String(255), nullable=nullable)


def upgrade() -> None:
    _create_stripe_catalog_entries()
    _create_stripe_customers()
    _create_stripe_subscriptions()
    _create_stripe_subscription_items()


def _create_stripe_catalog_entries() -> None:
    op.create_table(
        "stripe_catalog_entries",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("catalog_key", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("book", sa.String(200), nullable=False),
        sa.Column("plan", sa.String(100), nullable=True),
        sa.Column("interval", sa.String(10), nullable=True),
        sa.Column("meter", sa.String(100), nullable=True),
        sa.Column("contract_org_id", sa.String(200), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("lookup_key", sa.String(255), nullable=True),
        _stripe_id("stripe_product_id"),
        _stripe_id("stripe_meter_id"),
        _stripe_id("stripe_price_id"),
        sa.Column("terms_json", sa.Text(), nullable=True),
        sa.Column("approximate", sa.Boolean(), nullable=False),
        sa.Column("synced_at", _AT, nullable=False),
        sa.UniqueConstraint("catalog_key", name="uq_stripe_catalog_entries_key"),
    )


def _create_stripe_customers() -> None:
    op.create_table(
        "stripe_customers",
        sa.Column("org_id", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        _stripe_id("stripe_customer_id"),
        _stripe_id("stripe_test_clock_id"),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", _AT, nullable=True),
        sa.Column("updated_at", _AT, nullable=False),
        sa.UniqueConstraint("stripe_customer_id", name="uq_stripe_customers_stripe_customer_id"),
    )


def _create_stripe_subscriptions() -> None:
    op.create_table(
        "stripe_subscriptions",
        sa.Column("org_id", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("book", sa.String(200), nullable=False),
        sa.Column("plan", sa.String(100), nullable=False),
        sa.Column("interval", sa.String(10), nullable=False),
        sa.Column("term_start_at", _AT, nullable=False),
        _stripe_id("stripe_customer_id"),
        _stripe_id("stripe_subscription_id"),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", _AT, nullable=True),
        sa.Column("updated_at", _AT, nullable=False),
        sa.UniqueConstraint(
            "stripe_subscription_id", name="uq_stripe_subscriptions_stripe_subscription_id"
        ),
    )


def _create_stripe_subscription_items() -> None:
    op.create_table(
        "stripe_subscription_items",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.String(200), nullable=False),
        sa.Column("component", sa.String(100), nullable=False),
        _stripe_id("stripe_subscription_id", nullable=False),
        _stripe_id("stripe_subscription_item_id", nullable=False),
        _stripe_id("stripe_price_id", nullable=False),
        sa.Column("interval", sa.String(10), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=True),
        sa.Column("current_period_start_at", _AT, nullable=True),
        sa.Column("current_period_end_at", _AT, nullable=True),
        sa.Column("updated_at", _AT, nullable=False),
        sa.UniqueConstraint("org_id", "component", name="uq_stripe_subscription_items_component"),
        sa.UniqueConstraint(
            "stripe_subscription_item_id",
            name="uq_stripe_subscription_items_stripe_subscription_item_id",
        ),
    )
    op.create_index("ix_stripe_subscription_items_org_id", "stripe_subscription_items", ["org_id"])


def downgrade() -> None:
    op.drop_index("ix_stripe_subscription_items_org_id", "stripe_subscription_items")
    op.drop_table("stripe_subscription_items")
    op.drop_table("stripe_subscriptions")
    op.drop_table("stripe_customers")
    op.drop_table("stripe_catalog_entries")

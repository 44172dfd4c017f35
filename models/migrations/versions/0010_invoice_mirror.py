"""A local mirror of Stripe's invoices (webhook- and sweep-fed) and the account-wide sweeps.

Revision ID: 0010_invoice_mirror
Revises: 0009_alerts (written beside other 0010s; re-chained when merged)
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_invoice_mirror"
down_revision: str | None = "0009_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "stripe_invoices",
        sa.Column("stripe_invoice_id", sa.String(255), primary_key=True),
        sa.Column("stripe_customer_id", sa.String(255), nullable=False),
        sa.Column("stripe_subscription_id", sa.String(255)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("status_rank", sa.Integer(), nullable=False),
        sa.Column("billing_reason", sa.String(50)),
        sa.Column("currency", sa.String(10), nullable=False),
        sa.Column("subtotal_amount", sa.Integer(), nullable=False),
        sa.Column("total_amount", sa.Integer(), nullable=False),
        sa.Column("amount_due", sa.Integer(), nullable=False),
        sa.Column("auto_advance", sa.Boolean()),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("period_start_at", _AT),
        sa.Column("period_end_at", _AT),
        sa.Column("lines_json", sa.Text(), nullable=False),
        sa.Column("lines_complete", sa.Boolean(), nullable=False),
        sa.Column("metadata_json", sa.Text(), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("stripe_observed_at", _AT, nullable=False),
        sa.Column("synced_at", _AT, nullable=False),
    )
    op.create_index(
        "ix_stripe_invoices_subscription_created",
        "stripe_invoices",
        ["stripe_subscription_id", "created_at"],
    )
    op.create_table(
        "stripe_invoice_sweeps",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("created_from_at", _AT, nullable=False),
        sa.Column("started_at", _AT, nullable=False),
        sa.Column("finished_at", _AT),
        sa.Column("invoice_count", sa.Integer(), nullable=False),
        sa.Column("page_requests", sa.Integer(), nullable=False),
        sa.Column("line_requests", sa.Integer(), nullable=False),
    )
    op.create_index("ix_stripe_invoice_sweeps_started_at", "stripe_invoice_sweeps", ["started_at"])


def downgrade() -> None:
    op.drop_table("stripe_invoice_sweeps")
    op.drop_table("stripe_invoices")

"""Reconciliation results and lines, webhook inbox, price checks.

Revision ID: 0004_reconciliation
Revises: 0003_push_records
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_reconciliation"
down_revision: str | None = "0003_push_records"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)
_QUANTITY = sa.Numeric(38, 12).with_variant(sa.Text(), "sqlite")


def upgrade() -> None:
    _create_reconciliations()
    _create_reconciliation_lines()
    _create_stripe_webhook_events()
    _create_price_checks()


def _create_reconciliations() -> None:
    op.create_table(
        "reconciliations",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("stripe_invoice_id", sa.String(255), nullable=False, index=True),
        sa.Column("stripe_customer_id", sa.String(255), nullable=False),
        sa.Column("org_id", sa.String(200), index=True),
        sa.Column("invoice_status", sa.String(20)),
        sa.Column("billing_reason", sa.String(50)),
        sa.Column("period", sa.String(100), index=True),
        sa.Column("period_start_at", _AT),
        sa.Column("period_end_at", _AT),
        sa.Column("currency", sa.String(10), nullable=False),
        sa.Column("status", sa.String(30), nullable=False, index=True),
        sa.Column("expected_total_amount", sa.Integer(), nullable=False),
        sa.Column("stripe_total_amount", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(50), nullable=False),
        sa.Column("held", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("created_at", _AT, nullable=False),
    )


def _create_reconciliation_lines() -> None:
    op.create_table(
        "reconciliation_lines",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column(
            "reconciliation_id",
            sa.Integer(),
            sa.ForeignKey("reconciliations.id"),
            nullable=False,
            index=True,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("component", sa.String(100), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("expected_quantity", _QUANTITY),
        sa.Column("expected_amount", sa.Integer()),
        sa.Column("stripe_quantity", _QUANTITY),
        sa.Column("stripe_amount", sa.Integer()),
        sa.Column("difference_amount", sa.Integer(), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("trace_json", sa.Text(), nullable=False),
    )


def _create_stripe_webhook_events() -> None:
    op.create_table(
        "stripe_webhook_events",
        sa.Column("stripe_event_id", sa.String(255), primary_key=True),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("stripe_object_id", sa.String(255)),
        sa.Column("payload_json", sa.Text(), nullable=False),
        sa.Column("stripe_created_at", _AT),
        sa.Column("received_at", _AT, nullable=False),
        sa.Column("handled_at", _AT),
        sa.Column("outcome", sa.Text()),
        sa.Column("attempts", sa.Integer(), nullable=False),
    )


def _create_price_checks() -> None:
    op.create_table(
        "price_checks",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("book", sa.String(200), nullable=False),
        sa.Column("checked_at", _AT, nullable=False),
        sa.Column("verified_count", sa.Integer(), nullable=False),
        sa.Column("drift_count", sa.Integer(), nullable=False),
        sa.Column("findings_json", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "price_checks",
        "stripe_webhook_events",
        "reconciliation_lines",
        "reconciliations",
    ):
        op.drop_table(table)

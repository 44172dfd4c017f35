"""Credits: each org's grants, the credit items applied to its invoices, and their split.

Revision ID: 0008_credits
Revises: 0007_lifecycle (written beside 0007; re-chained after it when merged)
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_credits"
down_revision: str | None = "0007_lifecycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "credit_grants",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.String(200), sa.ForeignKey("orgs.id"), nullable=False),
        sa.Column("grant_id", sa.String(200), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("at", _AT, nullable=False),
        sa.Column("expires_at", _AT),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("recorded_at", _AT, nullable=False),
        sa.UniqueConstraint("org_id", "grant_id", name="uq_credit_grants_org_id"),
    )
    op.create_table(
        "credit_applications",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.String(200), nullable=False, index=True),
        sa.Column("period_start_at", _AT, nullable=False),
        sa.Column("period_end_at", _AT, nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("charge_amount", sa.Integer(), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("stripe_invoice_id", sa.String(100), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
        sa.Column("stripe_invoice_item_id", sa.String(100)),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("error", sa.String(2000)),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("finished_at", _AT),
        sa.UniqueConstraint("org_id", "period_start_at", "sequence", name="uq_credit_applications"),
    )
    op.create_table(
        "credit_allocations",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column(
            "application_id",
            sa.Integer(),
            sa.ForeignKey("credit_applications.id"),
            nullable=False,
            index=True,
        ),
        sa.Column("org_id", sa.String(200), nullable=False, index=True),
        sa.Column("grant_id", sa.String(200), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.UniqueConstraint("application_id", "grant_id", name="uq_credit_allocations"),
    )


def downgrade() -> None:
    op.drop_table("credit_allocations")
    op.drop_table("credit_applications")
    op.drop_table("credit_grants")

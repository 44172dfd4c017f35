"""Quota records: monthly usage checkpoints, live environments, denials and first crossings.

Revision ID: 0005_quota_records
Revises: 0004_reconciliation
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_quota_records"
down_revision: str | None = "0004_reconciliation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "quota_usage",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.String(200), sa.ForeignKey("orgs.id"), nullable=False),
        sa.Column("quota", sa.String(50), nullable=False),
        sa.Column("period_start", _AT, nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.UniqueConstraint("org_id", "quota", "period_start", name="uq_quota_usage_period"),
    )
    op.create_table(
        "quota_environments",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.String(200), sa.ForeignKey("orgs.id"), nullable=False),
        sa.Column("environment_id", sa.String(200), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("deleted_at", _AT),
        sa.UniqueConstraint("org_id", "environment_id", name="uq_quota_environments_org_env"),
    )
    op.create_table(
        "quota_events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.String(200), sa.ForeignKey("orgs.id"), nullable=False),
        sa.Column("quota", sa.String(50), nullable=False),
        sa.Column("period_start", _AT, nullable=False),
        sa.Column("decision", sa.String(20), nullable=False),
        sa.Column("mode", sa.String(10), nullable=False),
        sa.Column("limit", sa.BigInteger(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("occurrence_count", sa.BigInteger(), nullable=False),
        sa.Column("first_at", _AT, nullable=False),
        sa.Column("last_at", _AT, nullable=False),
        sa.UniqueConstraint(
            "org_id", "quota", "period_start", "decision", name="uq_quota_events_period"
        ),
    )


def downgrade() -> None:
    for table in ("quota_events", "quota_environments", "quota_usage"):
        op.drop_table(table)

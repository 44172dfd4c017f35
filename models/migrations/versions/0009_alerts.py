"""Operations: alerts (one per subject), the scheduled tasks' last runs, month close progress.

Revision ID: 0009_alerts
Revises: 0008_credits
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_alerts"
down_revision: str | None = "0008_credits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)
_PENDING = sa.text("delivery = 'pending'")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("subject_key", sa.String(255), nullable=False, unique=True),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("org_id", sa.String(200)),
        sa.Column("stripe_invoice_id", sa.String(255)),
        sa.Column("reconciliation_id", sa.Integer()),
        sa.Column("difference_amount", sa.Integer()),
        sa.Column("currency", sa.String(10)),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("details_json", sa.Text(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("delivery", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _AT),
        sa.Column("last_attempt_at", _AT),
        sa.Column("last_error", sa.Text()),
        sa.Column("delivered_at", _AT),
    )
    op.create_index(
        "ix_alerts_pending", "alerts", ["id"], postgresql_where=_PENDING, sqlite_where=_PENDING
    )
    op.create_table(
        "scheduled_runs",
        sa.Column("task_name", sa.String(200), primary_key=True),
        sa.Column("last_started_at", _AT),
        sa.Column("last_finished_at", _AT),
        sa.Column("last_outcome", sa.String(20)),
        sa.Column("last_error", sa.Text()),
        sa.Column("last_duration_ms", sa.Integer()),
        sa.Column("run_count", sa.Integer(), nullable=False),
    )
    op.create_table(
        "close_runs",
        sa.Column("period", sa.String(20), primary_key=True),
        sa.Column("started_at", _AT, nullable=False),
        sa.Column("org_count", sa.Integer(), nullable=False),
        sa.Column("finished_at", _AT),
    )
    op.create_table(
        "close_chunks",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("period", sa.String(20), nullable=False, index=True),
        sa.Column("first_org_id", sa.String(200), nullable=False),
        sa.Column("org_count", sa.Integer(), nullable=False),
        sa.Column("failed_count", sa.Integer(), nullable=False),
        sa.Column("finished_at", _AT, nullable=False),
        sa.UniqueConstraint("period", "first_org_id", name="uq_close_chunks"),
    )


def downgrade() -> None:
    op.drop_table("close_chunks")
    op.drop_table("close_runs")
    op.drop_table("scheduled_runs")
    op.drop_index("ix_alerts_pending", table_name="alerts")
    op.drop_table("alerts")

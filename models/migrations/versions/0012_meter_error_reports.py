"""Stripe's asynchronous meter error reports, linked to the usage pushes they rejected.

Revision ID: 0012_meter_error_reports
Revises: 0011_close_steps
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_meter_error_reports"
down_revision: str | None = "0011_close_steps"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "meter_error_reports",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("stripe_event_id", sa.String(255), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("stripe_meter_id", sa.String(255)),
        sa.Column("code", sa.String(100)),
        sa.Column("error_message", sa.String(2000)),
        sa.Column("identifier", sa.String(255)),
        sa.Column("type_error_count", sa.Integer(), nullable=False),
        sa.Column("event_error_count", sa.Integer(), nullable=False),
        sa.Column("summary", sa.String(2000)),
        sa.Column("validation_start_at", _AT),
        sa.Column("validation_end_at", _AT),
        sa.Column("event_created_at", _AT),
        sa.Column("received_at", _AT, nullable=False),
        sa.Column("usage_push_id", _ID, sa.ForeignKey("usage_pushes.id")),
        sa.Column("org_id", sa.String(200)),
        sa.Column("meter", sa.String(100)),
        sa.Column("period_start_at", _AT),
        sa.UniqueConstraint("stripe_event_id", "position", name="uq_meter_error_reports_event"),
    )
    op.create_index("ix_meter_error_reports_identifier", "meter_error_reports", ["identifier"])
    op.create_index(
        "ix_meter_error_reports_org_meter",
        "meter_error_reports",
        ["org_id", "meter", "period_start_at"],
    )


def downgrade() -> None:
    op.drop_table("meter_error_reports")

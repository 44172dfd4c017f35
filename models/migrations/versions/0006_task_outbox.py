"""The task outbox, and an index of the webhook inbox's unhandled events.

Revision ID: 0006_task_outbox
Revises: 0005_quota_records
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_task_outbox"
down_revision: str | None = "0005_quota_records"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)
_PENDING = sa.text("published_at IS NULL")
_UNHANDLED = sa.text("handled_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "task_outbox",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("task_name", sa.String(200), nullable=False),
        sa.Column("task_id", sa.String(64), nullable=False, index=True),
        sa.Column("args_json", sa.Text(), nullable=False),
        sa.Column("kwargs_json", sa.Text(), nullable=False),
        sa.Column("eta_at", _AT),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("published_at", _AT),
    )
    op.create_index(
        "ix_task_outbox_pending",
        "task_outbox",
        ["id"],
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    )
    op.create_index(
        "ix_stripe_webhook_events_unhandled",
        "stripe_webhook_events",
        ["received_at"],
        postgresql_where=_UNHANDLED,
        sqlite_where=_UNHANDLED,
    )


def downgrade() -> None:
    op.drop_index("ix_stripe_webhook_events_unhandled", table_name="stripe_webhook_events")
    op.drop_index("ix_task_outbox_pending", table_name="task_outbox")
    op.drop_table("task_outbox")

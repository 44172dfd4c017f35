"""The subscription lifecycle: scheduled changes and cancellations, and subscription endings.

Revision ID: 0007_lifecycle
Revises: 0006_task_outbox
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_lifecycle"
down_revision: str | None = "0006_task_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("org_plan_changes") as batch:
        batch.add_column(sa.Column("requested_at", _AT))
        batch.add_column(sa.Column("cancel_credit", sa.String(10)))
    op.create_table(
        "subscription_endings",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.String(200), nullable=False),
        sa.Column("stripe_subscription_id", sa.String(255), nullable=False),
        sa.Column("how", sa.String(10), nullable=False),
        sa.Column("ends_at", _AT, nullable=False),
        sa.Column("prorate", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("stripe_final_invoice_id", sa.String(255)),
        sa.Column("error", sa.Text()),
        sa.Column("started_at", _AT),
        sa.Column("updated_at", _AT, nullable=False),
        sa.UniqueConstraint("idempotency_key", name="uq_subscription_endings_key"),
    )
    op.create_index("ix_subscription_endings_org", "subscription_endings", ["org_id", "ends_at"])


def downgrade() -> None:
    op.drop_index("ix_subscription_endings_org", table_name="subscription_endings")
    op.drop_table("subscription_endings")
    with op.batch_alter_table("org_plan_changes") as batch:
        batch.drop_column("cancel_credit")
        batch.drop_column("requested_at")

"""The month close in steps: the invoice sweep's progress, and the close's one fan-out.

Revision ID: 0011_close_steps
Revises: 0010_invoice_mirror
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_close_steps"
down_revision: str | None = "0010_invoice_mirror"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("stripe_invoice_sweeps") as table:
        table.add_column(sa.Column("step", sa.Integer(), nullable=False, server_default="0"))
        table.add_column(sa.Column("cursor", sa.String(255)))
    with op.batch_alter_table("close_runs") as table:
        table.add_column(sa.Column("sweep_id", sa.BigInteger()))
        table.add_column(sa.Column("fan_out_claimed_at", _AT))
        table.add_column(sa.Column("fanned_out_at", _AT))


def downgrade() -> None:
    with op.batch_alter_table("close_runs") as table:
        table.drop_column("fanned_out_at")
        table.drop_column("fan_out_claimed_at")
        table.drop_column("sweep_id")
    with op.batch_alter_table("stripe_invoice_sweeps") as table:
        table.drop_column("cursor")
        table.drop_column("step")

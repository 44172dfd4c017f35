"""Push records: seat pushes, usage periods, usage pushes, usage adjustments, minimum top-ups.

Revision ID: 0003_push_records
Revises: 0002_stripe_records
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_push_records"
down_revision: str | None = "0002_stripe_records"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)
_QUANTITY = sa.Numeric(38, 12).with_variant(sa.Text(), "sqlite")


def _common(*columns: sa.Column) -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.String(200), nullable=False, index=True),
        *columns,
    ]


def upgrade() -> None:
    _create_seat_pushes()
    _create_usage_periods()
    _create_usage_pushes()
    _create_usage_adjustments()
    _create_minimum_topups()


def _create_seat_pushes() -> None:
    op.create_table(
        "seat_pushes",
        *_common(
            sa.Column("kind", sa.String(20), nullable=False),
            sa.Column("term_start_at", _AT, nullable=False),
            sa.Column("window_start_at", _AT),
            sa.Column("proration_at", _AT),
            sa.Column("from_quantity", sa.Integer(), nullable=False),
            sa.Column("to_quantity", sa.Integer(), nullable=False),
            sa.Column("proration_behavior", sa.String(30), nullable=False),
            sa.Column("expected_amount", sa.Integer(), nullable=False),
            sa.Column("stripe_subscription_item_id", sa.String(100), nullable=False),
            sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
            sa.Column("status", sa.String(10), nullable=False),
            sa.Column("error", sa.String(2000)),
            sa.Column("stripe_request_id", sa.String(100)),
            sa.Column("created_at", _AT, nullable=False),
            sa.Column("finished_at", _AT),
        ),
    )


def _create_usage_periods() -> None:
    op.create_table(
        "usage_periods",
        *_common(
            sa.Column("meter", sa.String(100), nullable=False),
            sa.Column("period_start_at", _AT, nullable=False),
            sa.Column("period_end_at", _AT, nullable=False),
            sa.Column("ledger_quantity", _QUANTITY, nullable=False),
            sa.Column("sent_quantity", _QUANTITY),
            sa.Column("sent_revision", sa.Integer(), nullable=False),
            sa.Column("sent_at", _AT),
            sa.Column("confirmed_quantity", _QUANTITY),
            sa.Column("confirmed_at", _AT),
            sa.Column("invoice_final_at", _AT),
            sa.Column("stripe_invoice_id", sa.String(100)),
            sa.Column("invoiced_quantity", _QUANTITY),
            sa.Column("adjusted_quantity", _QUANTITY, nullable=False),
            sa.Column("updated_at", _AT, nullable=False),
        ),
        sa.UniqueConstraint("org_id", "meter", "period_start_at", name="uq_usage_periods"),
    )


def _create_usage_pushes() -> None:
    op.create_table(
        "usage_pushes",
        *_common(
            sa.Column("meter", sa.String(100), nullable=False),
            sa.Column("period_start_at", _AT, nullable=False),
            sa.Column("revision", sa.Integer(), nullable=False),
            sa.Column("quantity", _QUANTITY, nullable=False),
            sa.Column("identifier", sa.String(255), nullable=False, unique=True),
            sa.Column("event_timestamp_at", _AT, nullable=False),
            sa.Column("status", sa.String(10), nullable=False),
            sa.Column("error", sa.String(2000)),
            sa.Column("created_at", _AT, nullable=False),
            sa.Column("finished_at", _AT),
        ),
        sa.UniqueConstraint(
            "org_id", "meter", "period_start_at", "revision", name="uq_usage_pushes_revision"
        ),
    )


def _create_usage_adjustments() -> None:
    op.create_table(
        "usage_adjustments",
        *_common(
            sa.Column("meter", sa.String(100), nullable=False),
            sa.Column("period_start_at", _AT, nullable=False),
            sa.Column("sequence", sa.Integer(), nullable=False),
            sa.Column("quantity_delta", _QUANTITY, nullable=False),
            sa.Column("amount", sa.Integer(), nullable=False),
            sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
            sa.Column("stripe_invoice_item_id", sa.String(100)),
            sa.Column("status", sa.String(10), nullable=False),
            sa.Column("error", sa.String(2000)),
            sa.Column("created_at", _AT, nullable=False),
            sa.Column("finished_at", _AT),
        ),
        sa.UniqueConstraint(
            "org_id", "meter", "period_start_at", "sequence", name="uq_usage_adjustments_sequence"
        ),
    )


def _create_minimum_topups() -> None:
    op.create_table(
        "minimum_topups",
        *_common(
            sa.Column("period_start_at", _AT, nullable=False),
            sa.Column("sequence", sa.Integer(), nullable=False),
            sa.Column("usage_amount", sa.Integer(), nullable=False),
            sa.Column("amount", sa.Integer(), nullable=False),
            sa.Column("stripe_invoice_id", sa.String(100)),
            sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
            sa.Column("stripe_invoice_item_id", sa.String(100)),
            sa.Column("status", sa.String(10), nullable=False),
            sa.Column("error", sa.String(2000)),
            sa.Column("created_at", _AT, nullable=False),
            sa.Column("finished_at", _AT),
        ),
        sa.UniqueConstraint("org_id", "period_start_at", "sequence", name="uq_minimum_topups"),
    )


def downgrade() -> None:
    for table in (
        "minimum_topups",
        "usage_adjustments",
        "usage_pushes",
        "usage_periods",
        "seat_pushes",
    ):
        op.drop_table(table)

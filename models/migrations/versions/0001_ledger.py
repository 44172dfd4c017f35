"""Ledger: orgs, plan changes, seat changes, usage events, resource reports.

Revision ID: 0001_ledger
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_ledger"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Hand-written to match models/ledger.py; the types are spelled out so that this revision
# never changes when the models do.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)
_QUANTITY = sa.Numeric(38, 12).with_variant(sa.Text(), "sqlite")


def _org_fk() -> sa.Column[str]:
    return sa.Column("org_id", sa.String(200), sa.ForeignKey("orgs.id"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "orgs",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("book", sa.String(200), nullable=False),
        sa.Column("plan", sa.String(100), nullable=False),
        sa.Column("interval", sa.String(10), nullable=False),
        sa.Column("term_start_at", _AT, nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
    )
    op.create_table(
        "org_plan_changes",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        _org_fk(),
        sa.Column("book", sa.String(200), nullable=False),
        sa.Column("plan", sa.String(100), nullable=False),
        sa.Column("interval", sa.String(10), nullable=False),
        sa.Column("at", _AT, nullable=False),
        sa.Column("recorded_at", _AT, nullable=False),
        sa.UniqueConstraint("org_id", "at", name="uq_org_plan_changes_org_at"),
    )
    op.create_table(
        "seat_changes",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        _org_fk(),
        sa.Column("seat_count", sa.Integer(), nullable=False),
        sa.Column("at", _AT, nullable=False),
        sa.Column("recorded_at", _AT, nullable=False),
        sa.UniqueConstraint("org_id", "at", "seat_count", name="uq_seat_changes_org_at_count"),
    )
    op.create_table(
        "usage_events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(200), nullable=False),
        _org_fk(),
        sa.Column("meter", sa.String(100), nullable=False),
        sa.Column("quantity", _QUANTITY, nullable=False),
        sa.Column("at", _AT, nullable=False),
        sa.Column("received_at", _AT, nullable=False),
        sa.UniqueConstraint("org_id", "event_id", name="uq_usage_events_org_event"),
    )
    # BRIN on PostgreSQL (cheap to maintain on the ingest path, events arrive in time order);
    # a B-tree on SQLite, which ignores postgresql_using.
    op.create_index("ix_usage_events_at", "usage_events", ["at"], postgresql_using="brin")
    op.create_table(
        "resource_reports",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        _org_fk(),
        sa.Column("stack", sa.String(200), nullable=False),
        sa.Column("resource_count", sa.Integer(), nullable=False),
        sa.Column("at", _AT, nullable=False),
        sa.Column("received_at", _AT, nullable=False),
        sa.UniqueConstraint(
            "org_id", "stack", "at", "resource_count", name="uq_resource_reports_report"
        ),
    )
    op.create_index("ix_resource_reports_at", "resource_reports", ["at"])


def downgrade() -> None:
    op.drop_index("ix_resource_reports_at", table_name="resource_reports")
    op.drop_table("resource_reports")
    op.drop_index("ix_usage_events_at", table_name="usage_events")
    op.drop_table("usage_events")
    op.drop_table("seat_changes")
    op.drop_table("org_plan_changes")
    op.drop_table("orgs")

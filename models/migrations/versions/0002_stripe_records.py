"""Stripe records: catalog objects, customers, subscriptions and items.

Revision ID: 0002_stripe_records
Revises: 0001_ledger
Create Date: 2026-11-21
"""

from collections.abc import Sequence

revision: str = "0002_stripe_records"
down_revision: str | None = "0001_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

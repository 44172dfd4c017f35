"""Reconciliation results and lines, webhook inbox.

Revision ID: 0004_reconciliation
Revises: 0003_push_records
Create Date: 2026-11-21
"""

from collections.abc import Sequence

revision: str = "0004_reconciliation"
down_revision: str | None = "0003_push_records"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

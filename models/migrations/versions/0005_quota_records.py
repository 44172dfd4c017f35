"""Quota events: denials and first crossings.

Revision ID: 0005_quota_records
Revises: 0004_reconciliation
Create Date: 2026-11-21
"""

from collections.abc import Sequence

revision: str = "0005_quota_records"
down_revision: str | None = "0004_reconciliation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

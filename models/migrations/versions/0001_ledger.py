"""Ledger: orgs, seat changes, usage events, resource reports.

Revision ID: 0001_ledger
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

revision: str = "0001_ledger"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

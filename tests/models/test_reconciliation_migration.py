"""Migration 0004 creates exactly the reconciliation tables declared in models/reconciliation.py."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import models.reconciliation
from tests.models.test_stripe_records_migration import _table_of

TABLES = {"reconciliations", "reconciliation_lines", "stripe_webhook_events", "price_checks"}


def test_migration_matches_the_models(engine: Engine) -> None:
    assert models.reconciliation.Reconciliation.__tablename__ == "reconciliations"
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = compare_metadata(context, SQLModel.metadata)
    ours = [d for d in diffs if _table_of(d) in TABLES]
    assert ours == []

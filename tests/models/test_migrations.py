"""The migrations apply cleanly on both databases, are idempotent, and build exactly the
schema the SQLModel tables declare (no table, column, type or constraint drift)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import models.alerts
import models.credits
import models.invoice_mirror
import models.ledger
import models.lifecycle_records
import models.meter_errors
import models.outbox
import models.push_records
import models.quota_records
import models.reconciliation
import models.stripe_records
from models.db import make_engine, migrate

_ = (
    models.alerts,
    models.credits,
    models.invoice_mirror,
    models.ledger,
    models.lifecycle_records,
    models.meter_errors,
    models.outbox,
    models.push_records,
    models.quota_records,
    models.reconciliation,
    models.stripe_records,
)


def test_migrate_twice_is_a_no_op(database_url: str) -> None:
    migrate(database_url)
    migrate(database_url)
    engine = make_engine(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert "alembic_version" in tables
    assert set(SQLModel.metadata.tables) <= tables


def test_migrated_schema_matches_every_model(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = compare_metadata(context, SQLModel.metadata)
    # Index-only differences are dialect details (e.g. a BRIN index on PostgreSQL only).
    relevant = [
        d for d in diffs if not (isinstance(d, tuple) and d[0] in ("add_index", "remove_index"))
    ]
    assert relevant == []

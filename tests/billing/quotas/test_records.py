"""Migration 0005 creates exactly the quota tables declared in models/quota_records.py."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import models.quota_records
from tests.models.test_stripe_records_migration import _table_of

QUOTA_TABLES = {"quota_usage", "quota_environments", "quota_events"}


def test_migration_matches_the_models(engine: Engine) -> None:
    assert models.quota_records.QuotaEvent.__tablename__ == "quota_events"
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = compare_metadata(context, SQLModel.metadata)
    assert [d for d in diffs if _table_of(d) in QUOTA_TABLES] == []

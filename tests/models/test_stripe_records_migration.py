"""Migration 0002 creates exactly the Stripe record tables declared in models/stripe_records.py."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import models.stripe_records

STRIPE_TABLES = {
    "stripe_catalog_entries",
    "stripe_customers",
    "stripe_subscriptions",
    "stripe_subscription_items",
}


def _table_of(diff: object) -> str | None:
    """The table a compare_metadata diff is about (diffs are tuples, or lists of tuples)."""
    if isinstance(diff, list):
        return _table_of(diff[0]) if diff else None
    assert isinstance(diff, tuple)
    for part in diff[1:]:
        if isinstance(part, str):
            return part
        name = getattr(getattr(part, "table", part), "name", None)
        if isinstance(name, str):
            return name
    return None


def test_migration_matches_the_models(engine: Engine) -> None:
    assert models.stripe_records.StripeCustomerRecord.__tablename__ == "stripe_customers"
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = compare_metadata(context, SQLModel.metadata)
    ours = [d for d in diffs if _table_of(d) in STRIPE_TABLES]
    assert ours == []

"""The migrations apply cleanly on both databases and are idempotent."""

from __future__ import annotations

from sqlalchemy import inspect

from models.db import make_engine, migrate


def test_migrate_twice_is_a_no_op(database_url: str) -> None:
    migrate(database_url)
    migrate(database_url)
    engine = make_engine(database_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert "alembic_version" in tables

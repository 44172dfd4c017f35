"""`engine_for` never migrates: a database that is behind, empty or missing is refused with one
sentence that names both revisions and the command that fixes it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from models.db import (
    SchemaRevisionError,
    display_url,
    engine_for,
    head_revision,
    make_engine,
    migrate,
)

BEHIND = "0003_push_records"


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_the_code_needs_the_last_migration() -> None:
    versions = Path(__file__).parents[2] / "models" / "migrations" / "versions"
    assert head_revision() == max(p.stem for p in versions.glob("0*.py"))


def test_a_schema_behind_is_refused_and_left_as_it_is(database_url: str) -> None:
    migrate(database_url, BEHIND)
    with pytest.raises(SchemaRevisionError) as refused:
        engine_for(database_url)
    assert str(refused.value) == (
        f"the database at {display_url(database_url)} is at revision {BEHIND}, "
        f"the code needs {head_revision()}: run billing db upgrade"
    )
    assert "quota_usage" not in _tables(database_url)  # a table of 0005: nothing migrated


def test_after_the_upgrade_the_same_url_opens(database_url: str) -> None:
    migrate(database_url, BEHIND)
    with pytest.raises(SchemaRevisionError):
        engine_for(database_url)
    migrate(database_url)
    engine = engine_for(database_url)  # a refusal is not cached
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == (
            head_revision()
        )


def test_an_empty_database_is_refused_and_not_migrated(database_url: str) -> None:
    assert _tables(database_url) == set()  # connected once: the SQLite file exists, empty
    with pytest.raises(SchemaRevisionError, match=r"has no schema, the code needs .*: run billing"):
        engine_for(database_url)
    assert _tables(database_url) == set()


def test_a_missing_sqlite_file_is_refused_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.db"
    with pytest.raises(SchemaRevisionError, match="does not exist, the code needs"):
        engine_for(f"sqlite:///{path}")
    assert not path.exists()


def test_a_schema_from_newer_code_is_refused_without_suggesting_an_upgrade(
    database_url: str,
) -> None:
    migrate(database_url)
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0999_future'"))
    finally:
        engine.dispose()
    with pytest.raises(SchemaRevisionError) as refused:
        engine_for(database_url)
    assert "0999_future, which this code does not know" in str(refused.value)
    assert "billing db upgrade" not in str(refused.value)


def test_errors_never_show_the_database_password() -> None:
    shown = display_url("postgresql://billing:s3cret@db:5432/billing")
    assert "s3cret" not in shown
    assert shown.startswith("postgresql://billing:")

"""Database engines, sessions and schema migration (Alembic) for SQLite and PostgreSQL.

Only `migrate` (run by `billing db upgrade`, the compose `migrate` service, and code that makes
a fresh database of its own: the demo, tests, benchmarks) changes the schema. `engine_for`
never does: it refuses a database whose schema is not at the code's head revision.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class SchemaRevisionError(RuntimeError):
    """The database's schema is not the one this code needs: `billing db upgrade` first."""


def normalize_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and use the psycopg 3 driver for them."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.removeprefix("postgres://")
    return url


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout for many writers."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Bring the schema at `url` up to `revision` (idempotent)."""
    command.upgrade(alembic_config(url), revision)


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


@cache
def head_revision() -> str:
    """The revision the code needs: the head of `models/migrations` (read once per process)."""
    heads = _scripts().get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"models/migrations has {len(heads)} heads, expected one: {heads}")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as connection:
        heads = MigrationContext.configure(connection).get_current_heads()
    return ", ".join(heads) or None


def check_schema(engine: Engine, url: str) -> None:
    """Raise SchemaRevisionError unless the database at `url` is at the code's head revision."""
    needed = head_revision()
    current = current_revision(engine)
    if current == needed:
        return
    shown = display_url(url)
    if current is None:
        problem = f"the database at {shown} has no schema, the code needs {needed}"
    elif current not in {script.revision for script in _scripts().walk_revisions()}:
        raise SchemaRevisionError(
            f"the database at {shown} is at revision {current}, which this code does not know "
            f"(it needs {needed}): it was migrated by newer code"
        )
    else:
        problem = f"the database at {shown} is at revision {current}, the code needs {needed}"
    raise SchemaRevisionError(f"{problem}: run billing db upgrade")


def display_url(url: str) -> str:
    """`url` as it may be shown in an error or a log line: without its password."""
    return make_url(url).render_as_string(hide_password=True)


@cache
def engine_for(url: str) -> Engine:
    """One engine per URL per process, for a database at the code's schema revision.

    Checked once (one query of `alembic_version`); a database that is behind, empty or
    missing raises SchemaRevisionError instead (and is not cached, so a later call after
    `billing db upgrade` succeeds). Never migrates: see `migrate`.
    """
    _refuse_missing_sqlite_file(url)
    engine = make_engine(url)
    try:
        check_schema(engine, url)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _refuse_missing_sqlite_file(url: str) -> None:
    """Connecting to a missing SQLite file would create an empty one: say so instead."""
    parsed = make_url(normalize_url(url))
    database = parsed.database
    if (
        parsed.drivername.startswith("sqlite")
        and database
        and database != ":memory:"
        and not database.startswith("file:")
        and not Path(database).exists()
    ):
        raise SchemaRevisionError(
            f"the database at {display_url(url)} does not exist, the code needs "
            f"{head_revision()}: run billing db upgrade"
        )


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise

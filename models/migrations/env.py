"""Alembic environment: runs migrations against the URL set by models.db.alembic_config."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool
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

config = context.config
target_metadata = SQLModel.metadata
# Imported to register their tables on the metadata.
_ = (
    models.alerts,
    models.credits,
    models.ledger,
    models.lifecycle_records,
    models.meter_errors,
    models.outbox,
    models.push_records,
    models.quota_records,
    models.reconciliation,
    models.stripe_records,
)


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        connectable = engine_from_config(
            config.get_section(config.config_ini_section, {}),
            prefix="sqlalchemy.",
            poolclass=pool.NullPool,
        )
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()

"""The quota tables: monthly counts checkpointed from Redis, and the support records of denials
and crossings (`quota_events`), written with one upsert each."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from billing.core.meters import Quota, QuotaMode
from billing.core.periods import Period
from models.db import unit_of_work
from models.quota_records import QuotaEvent, QuotaEventDecision, QuotaUsage


def stored_usage(engine: Engine, org_id: str, quota: Quota, period: Period) -> int:
    """The checkpointed count of `quota` for the org and period (0 when none)."""
    with Session(engine) as session:
        used = session.exec(
            select(QuotaUsage.used).where(
                QuotaUsage.org_id == org_id,
                QuotaUsage.quota == quota.value,
                QuotaUsage.period_start == period.period_start,
            )
        ).first()
    return int(used or 0)


def store_usage(  # noqa: PLR0917 (the checkpoint's one row, in its key's order)
    engine: Engine, org_id: str, quota: Quota, period: Period, used: int, now: datetime
) -> None:
    """Store `used` unless a larger count is stored already (the count only grows)."""
    table = _table(QuotaUsage)
    values = {
        "org_id": org_id,
        "quota": quota.value,
        "period_start": period.period_start,
        "used": used,
        "updated_at": now,
    }
    with unit_of_work(engine) as session:
        dialect = session.get_bind().dialect.name
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
        greatest = sa.func.greatest if dialect == "postgresql" else sa.func.max
        session.execute(
            insert.values(values).on_conflict_do_update(
                index_elements=["org_id", "quota", "period_start"],
                set_={
                    "used": greatest(table.c.used, insert.excluded.used),
                    "updated_at": insert.excluded.updated_at,
                },
            )
        )


def record_event(
    engine: Engine,
    *,
    org_id: str,
    quota: Quota,
    kind: QuotaEventDecision,
    mode: QuotaMode,
    limit: int,
    used: int,
    amount: int,
    period: Period,
    now: datetime,
) -> None:
    """Create the org's row for this quota, month and decision, or count one more into it."""
    table = _table(QuotaEvent)
    values = {
        "org_id": org_id,
        "quota": quota.value,
        "period_start": period.period_start,
        "decision": kind.value,
        "mode": mode.value,
        "limit": limit,
        "used": used,
        "amount": amount,
        "occurrence_count": 1,
        "first_at": now,
        "last_at": now,
    }
    with unit_of_work(engine) as session:
        dialect = session.get_bind().dialect.name
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
        session.execute(
            insert.values(values).on_conflict_do_update(
                index_elements=["org_id", "quota", "period_start", "decision"],
                set_={
                    "mode": insert.excluded.mode,
                    "limit": insert.excluded.limit,
                    "used": insert.excluded.used,
                    "amount": insert.excluded.amount,
                    "occurrence_count": table.c.occurrence_count + 1,
                    "last_at": insert.excluded.last_at,
                },
            )
        )


def events(engine: Engine, org_id: str | None = None) -> Sequence[QuotaEvent]:
    """Recorded denials and crossings, newest first (optionally of one org)."""
    statement = select(QuotaEvent).order_by(
        col(QuotaEvent.last_at).desc(), col(QuotaEvent.id).desc()
    )
    if org_id is not None:
        statement = statement.where(QuotaEvent.org_id == org_id)
    with Session(engine) as session:
        return session.exec(statement).all()


def _table(model: type[Any]) -> sa.Table:
    table = model.__table__
    assert isinstance(table, sa.Table)
    return table

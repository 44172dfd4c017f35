"""Ledger tables: UTC datetimes and exact quantities survive a round trip on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, StatementError

from models.db import unit_of_work
from models.ledger import Org, UsageEvent, decimal_sum

T0 = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)


def test_tables_and_indexes_exist(engine: Engine) -> None:
    inspector = inspect(engine)
    assert {"orgs", "org_plan_changes", "seat_changes", "usage_events", "resource_reports"} <= set(
        inspector.get_table_names()
    )
    assert "ix_usage_events_at" in {
        index["name"] for index in inspector.get_indexes("usage_events")
    }
    assert [
        constraint["column_names"]
        for constraint in inspector.get_unique_constraints("usage_events")
    ] == [["org_id", "event_id"]]


def org(org_id: str = "acme") -> Org:
    return Org(
        id=org_id,
        book="devtools",
        plan="free",
        interval="month",
        term_start_at=T0,
        created_at=T0,
        updated_at=T0,
    )


def test_datetimes_come_back_aware_utc_and_quantities_exact(engine: Engine) -> None:
    plus_two = T0.astimezone(timezone(timedelta(hours=2)))
    with unit_of_work(engine) as session:
        session.add(org())
        session.flush()
        for index, quantity in enumerate(("0.1", "0.2", "0.000000000001")):
            session.add(
                UsageEvent(
                    event_id=f"e{index}",
                    org_id="acme",
                    meter="copilot_messages",
                    quantity=Decimal(quantity),
                    at=plus_two,
                    received_at=T0,
                )
            )
    with unit_of_work(engine) as session:
        event = session.exec(select(UsageEvent).where(UsageEvent.event_id == "e0")).scalar_one()  # type: ignore[call-overload, arg-type]
        connection = session.connection()
        total = connection.execute(
            select(decimal_sum(connection, UsageEvent.quantity))
        ).scalar_one()  # type: ignore[call-overload]
    assert event.at == T0
    assert event.at.tzinfo is not None
    assert event.at.utcoffset() == timedelta(0)
    assert total == Decimal("0.300000000001")


def test_usage_event_id_is_unique_per_org(engine: Engine) -> None:
    event = {
        "event_id": "e",
        "org_id": "acme",
        "meter": "copilot_messages",
        "quantity": Decimal(1),
        "at": T0,
        "received_at": T0,
    }
    with unit_of_work(engine) as session:
        session.add(org())
        session.flush()
        session.add(UsageEvent(**event))
    with pytest.raises(IntegrityError), unit_of_work(engine) as session:
        session.add(UsageEvent(**event))


def test_naive_datetimes_are_refused(engine: Engine) -> None:
    naive = datetime(2026, 1, 1)
    with pytest.raises(StatementError, match="naive"), unit_of_work(engine) as session:
        session.add(
            Org(
                id="x",
                book="devtools",
                plan="free",
                interval="month",
                term_start_at=naive,
                created_at=T0,
                updated_at=T0,
            )
        )

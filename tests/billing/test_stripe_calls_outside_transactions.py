"""No database transaction stays open across a Stripe call, in any service of billing/.

A Stripe call can take seconds (retries, rate limits); a transaction held open meanwhile pins a
PostgreSQL connection and snapshot, holds SQLite's write lock against every other worker, and
mixes "recorded before the call" with "recorded after it". Each service below runs against the
emulator with a gateway that, at every call, checks that no connection of the engine is inside
a transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, select

from billing.core.components import MINIMUM_TOPUP
from billing.core.keys import seat_step_key
from billing.pricing.book import load_book
from billing.reconciliation.price_drift import PriceDriftCheck
from billing.reconciliation.reconciler import Reconciler
from billing.seats.sync import SeatSync
from billing.stripe_gateway import StripeGateway
from billing.usage.push import UsagePusher
from models.push_records import (
    MinimumTopUp,
    SeatPush,
    SeatPushKind,
    UsageAdjustment,
    UsagePeriod,
    UsagePush,
)
from models.stripe_records import StripeCatalogEntry, WriteStatus
from tests.fixtures.e2e import World, world

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)


class OpenTransactions:
    """The engine's connections that are inside a transaction right now."""

    def __init__(self, engine: Engine) -> None:
        self.connections: set[int] = set()
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "commit", self._end)
        event.listen(engine, "rollback", self._end)

    def _begin(self, connection: Connection) -> None:
        self.connections.add(id(connection))

    def _end(self, connection: Connection) -> None:
        self.connections.discard(id(connection))


class GuardedGateway:
    """The real gateway; each call first notes whether a transaction was open."""

    def __init__(self, gateway: StripeGateway, transactions: OpenTransactions) -> None:
        self._gateway = gateway
        self._transactions = transactions
        self.calls: list[str] = []
        self.inside_transaction: list[str] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._gateway, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if self._transactions.connections:
                self.inside_transaction.append(name)
            return target(*args, **kwargs)

        return call


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, 10, day, hour, minute, tzinfo=UTC)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def usage(org: str, event_id: str, meter: str, quantity: int, when: datetime) -> dict[str, Any]:
    return {
        "type": "usage",
        "id": event_id,
        "org": org,
        "meter": meter,
        "quantity": quantity,
        "at": iso(when),
    }


@pytest.fixture
def guarded(
    database_url: str, request: pytest.FixtureRequest
) -> Iterator[tuple[World, GuardedGateway]]:
    with world(database_url, OCT) as w:
        gateway = GuardedGateway(w.gateway, OpenTransactions(w.engine))
        w.gateway = gateway  # type: ignore[assignment]  # catalog sync and provisioning
        w.seats = SeatSync(w.engine, gateway, w.books)  # type: ignore[arg-type]
        transport = getattr(request, "param", "stream")
        w.usage = UsagePusher(w.engine, gateway, w.books, transport=transport)  # type: ignore[arg-type]
        yield w, gateway


@pytest.mark.parametrize("guarded", ["stream", "v1"], indirect=True)
def test_devtools_month_makes_every_stripe_call_outside_a_transaction(
    guarded: tuple[World, GuardedGateway],
) -> None:
    w, gateway = guarded
    w.sync_catalog("devtools")
    w.ingest(
        [
            {
                "type": "org",
                "org": "acme",
                "plan": "team",
                "interval": "year",
                "seats": 10,
                "at": iso(OCT),
            }
        ]
    )
    w.provision("acme", "devtools", "team", "year", 10)
    w.advance(at(3, 12, 10))
    w.ingest([{"type": "seats", "org": "acme", "count": 12, "at": iso(at(3, 12, 1))}])
    w.sync_seats("acme")
    # A crash after a step's row was recorded `started`, before its call reached Stripe.
    w.advance(at(3, 12, 30))
    w.ingest([{"type": "seats", "org": "acme", "count": 13, "at": iso(at(3, 12, 21))}])
    with Session(w.engine) as session:
        item = session.exec(select(SeatPush)).one().stripe_subscription_item_id
        session.add(
            SeatPush(
                org_id="acme",
                kind=SeatPushKind.STEP,
                term_start_at=OCT,
                window_start_at=at(3, 12, 20),
                proration_at=at(3, 12, 21),
                from_quantity=12,
                to_quantity=13,
                proration_behavior="create_prorations",
                expected_amount=0,
                stripe_subscription_item_id=item,
                idempotency_key=seat_step_key("acme", OCT, at(3, 12, 20), 13),
                status=WriteStatus.STARTED,
                created_at=w.now,
            )
        )
        session.commit()
    resumed = w.sync_seats("acme")
    assert [(p.to_quantity, p.status) for p in resumed.pushes] == [(13, "done")]
    w.advance(at(10))
    w.ingest([usage("acme", "m1", "copilot_messages", 700, at(9))])
    w.usage.push_org("acme", w.now, verify=True)
    # The period ends; a late event in the grace period: the draft's line is behind the meter.
    w.advance(NOV + timedelta(minutes=5))
    w.ingest([usage("acme", "m2", "copilot_messages", 100, at(31, 23))])
    w.push_usage("acme")
    reconciler = Reconciler(w.engine, gateway, w.books)  # type: ignore[arg-type]
    (draft,) = [inv for inv in w.emulator.state.invoices() if inv["status"] == "draft"]
    reconciler.reconcile_invoice(draft["id"], w.now, trigger="test", hold=True)
    # Final: later usage becomes an adjustment.
    w.advance(NOV + timedelta(hours=2))
    w.ingest([usage("acme", "m3", "copilot_messages", 50, at(31, 23, 30))])
    w.push_usage("acme")
    with Session(w.engine) as session:  # a crash after the adjustment's call, before its record
        adjustment = session.exec(select(UsageAdjustment)).one()
        adjustment.status = WriteStatus.STARTED
        states = session.exec(select(UsagePeriod).where(UsagePeriod.period_start_at == OCT)).all()
        for state in states:
            # Reopened, so that the push revisits October (today a final period is not).
            state.invoice_final_at = None
            if state.meter == "copilot_messages":
                state.adjusted_quantity -= adjustment.quantity_delta
        session.add_all([adjustment, *states])
        session.commit()
    w.push_usage("acme")  # sends it again with its key: Stripe answers the first response
    with Session(w.engine) as session:
        assert session.exec(select(UsageAdjustment.status)).all() == ["done"]
    reconciler.sweep(w.now, timedelta(days=40))
    PriceDriftCheck(w.engine, gateway).check(load_book("devtools"), w.now)  # type: ignore[arg-type]

    written = set(gateway.calls)
    assert {
        "create_customer",
        "create_subscription",
        "update_subscription_item_quantity",
    } <= written
    stream = w.usage.sender.transport == "stream"
    meter_call = "send_meter_events" if stream else "create_meter_event"
    assert {meter_call, "list_meter_event_summaries", "create_invoice_item"} <= written
    assert gateway.inside_transaction == []


def test_minimum_top_ups_are_written_outside_a_transaction(
    guarded: tuple[World, GuardedGateway],
) -> None:
    """The invoice-item top-up of a subscription provisioned without the top-up meter's item
    (a catalog synced before it existed)."""
    w, gateway = guarded
    w.sync_catalog("zenaton")
    with Session(w.engine) as session:
        for entry in session.exec(
            select(StripeCatalogEntry).where(StripeCatalogEntry.meter == MINIMUM_TOPUP)
        ).all():
            session.delete(entry)
        session.commit()
    w.ingest([{"type": "org", "org": "zen", "book": "zenaton", "plan": "payg", "at": iso(OCT)}])
    w.provision("zen", "zenaton", "payg", "month", 0)
    w.advance(NOV + timedelta(minutes=5))
    w.ingest([usage("zen", "e1", "execution_time", 36_000, at(10))])
    first = w.push_usage("zen")
    with Session(w.engine) as session:  # a crash after the top-up's call, before its record
        row = session.exec(select(MinimumTopUp)).one()
        row.status = WriteStatus.STARTED
        session.add(row)
        session.commit()
    w.push_usage("zen")
    w.ingest([usage("zen", "e2", "execution_time", 3_600, at(20))])
    second = w.push_usage("zen")

    assert [m.changed_by for m in (*first.minimums, *second.minimums)] == [870, -13]
    with Session(w.engine) as session:
        rows = session.exec(select(MinimumTopUp)).all()
    assert sorted((row.amount, row.status) for row in rows) == [(-13, "done"), (870, "done")]
    assert gateway.inside_transaction == []


def test_metered_minimum_top_ups_are_sent_outside_a_transaction(
    guarded: tuple[World, GuardedGateway],
) -> None:
    """The top-up as a meter event (billing.usage.topup), a crash's row resent, then corrected."""
    w, gateway = guarded
    w.sync_catalog("zenaton")
    w.ingest([{"type": "org", "org": "zen", "book": "zenaton", "plan": "payg", "at": iso(OCT)}])
    w.provision("zen", "zenaton", "payg", "month", 0)
    w.advance(NOV + timedelta(minutes=5))
    w.ingest([usage("zen", "e1", "execution_time", 36_000, at(10))])
    w.push_usage("zen")
    with Session(w.engine) as session:  # a crash after the stream request, before its record
        row = session.exec(select(UsagePush).where(UsagePush.meter == MINIMUM_TOPUP)).one()
        row.status = WriteStatus.STARTED
        session.add(row)
        session.commit()
    w.push_usage("zen")
    w.ingest([usage("zen", "e2", "execution_time", 3_600, at(20))])
    w.push_usage("zen")

    with Session(w.engine) as session:
        rows = session.exec(select(UsagePush).where(UsagePush.meter == MINIMUM_TOPUP)).all()
        assert session.exec(select(MinimumTopUp)).all() == []
    assert sorted((row.revision, int(row.quantity), row.status) for row in rows) == [
        (1, 870, "done"),
        (2, 857, "done"),
    ]
    assert gateway.inside_transaction == []

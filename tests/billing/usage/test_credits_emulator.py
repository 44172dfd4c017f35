"""Credits on Stripe's drafts through the emulator: one credit item per period for what the
grants pay of its usage charge (minimum included), corrected in the grace period, resent with
its key after a crash, never duplicated, and reconciled `matched`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from billing.ledger.credit_ledger import GrantStatus, credit_ledger
from billing.reconciliation.reconciler import Reconciler
from models.credits import CreditAllocation, CreditApplication
from models.stripe_records import StripeCustomerRecord, WriteStatus
from tests.fixtures.e2e import World, world

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
ORG = "zen-credit"


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def usage(event: str, seconds: int, when: datetime) -> dict[str, Any]:
    return {
        "type": "usage",
        "id": event,
        "org": ORG,
        "meter": "execution_time",
        "quantity": seconds,
        "at": iso(when),
    }


@pytest.fixture
def w(database_url: str) -> Iterator[World]:
    with world(database_url, OCT) as the_world:
        the_world.sync_catalog("zenaton")
        the_world.ingest(
            [
                {"type": "org", "org": ORG, "book": "zenaton", "plan": "payg", "at": iso(OCT)},
                {
                    "type": "credit",
                    "id": "goodwill",
                    "org": ORG,
                    "amount": 3000,
                    "at": iso(OCT),
                    "reason": "sorry for the outage",
                },
            ]
        )
        the_world.provision(ORG, "zenaton", "payg", "month", 0)
        yield the_world


def credit_items(w: World) -> list[int]:
    with Session(w.engine) as session:
        record = session.get(StripeCustomerRecord, ORG)
        assert record is not None
        customer = record.stripe_customer_id
    (invoice,) = [
        inv
        for inv in w.emulator.state.invoices(customer)
        if inv["billing_reason"] == "subscription_cycle"
    ]
    return [
        line["amount"]
        for line in invoice["lines"]["data"]
        if line["metadata"].get("billing_kind") == "credit"
    ]


def test_credit_on_the_draft_corrected_resumed_and_reconciled(w: World) -> None:
    w.advance(datetime(2026, 10, 16, tzinfo=UTC))
    w.ingest([usage("u-1", 36_000, datetime(2026, 10, 10, tzinfo=UTC))])  # 10 h = $1.30
    w.push_usage(ORG)
    w.advance(NOV + timedelta(minutes=5))  # Stripe drafted October's invoice at midnight
    close = w.push_usage(ORG)
    # The usage charge is the $10 minimum (130¢ + 870¢ top-up): the credit pays all of it.
    assert [(c.charge_amount, c.credit_amount, c.changed_by) for c in close.credits] == [
        (1000, 1000, 1000)
    ]
    assert [(c.credit_amount, c.changed_by) for c in w.push_usage(ORG).credits] == [(1000, 0)]
    assert credit_items(w) == [-1000]

    # 100 hours more inside the grace period: 110 h = $14.30, above the minimum; the credit
    # follows with a correction of the difference, not a second full item.
    w.ingest([usage("u-2", 360_000, datetime(2026, 10, 30, tzinfo=UTC))])
    late = w.push_usage(ORG)
    assert [(c.charge_amount, c.credit_amount, c.changed_by) for c in late.credits] == [
        (1430, 1430, 430)
    ]
    assert credit_items(w) == [-1000, -430]

    # A crash after Stripe took the correction but before it was recorded: the row stays
    # `started` and the next push sends it again with its key; Stripe replays, nothing doubles.
    with Session(w.engine) as session:
        row = session.exec(select(CreditApplication).where(CreditApplication.sequence == 2)).one()
        row.status = WriteStatus.STARTED.value
        session.add(row)
        session.commit()
    resumed = w.push_usage(ORG)
    assert [(c.credit_amount, c.changed_by) for c in resumed.credits] == [(1430, 430)]
    assert credit_items(w) == [-1000, -430]

    w.advance(NOV + timedelta(hours=2))  # past the grace period: finalized
    reconciler = Reconciler(w.engine, w.gateway, w.books)
    with Session(w.engine) as session:
        stripe_invoice_id = session.exec(select(CreditApplication)).first()
        assert stripe_invoice_id is not None
        invoice_id = stripe_invoice_id.stripe_invoice_id
    outcome = reconciler.reconcile_invoice(invoice_id, w.now, trigger="test")
    assert outcome.status.value == "matched", outcome
    assert w.push_usage(ORG).credits == ()  # final: nothing applied any more

    with Session(w.engine) as session:
        rows = session.exec(select(CreditApplication)).all()
        allocations = session.exec(select(CreditAllocation)).all()
        ledger = credit_ledger(session.connection(), ORG, w.now)
    assert sorted((r.sequence, r.amount, r.status) for r in rows) == [
        (1, 1000, "done"),
        (2, 430, "done"),
    ]
    assert sorted(a.amount for a in allocations) == [430, 1000]
    (grant,) = ledger.grants
    assert (grant.applied_amount, grant.remaining_amount, grant.status) == (
        1430,
        1570,
        GrantStatus.ACTIVE,
    )
    assert [(item.amount, item.charge_amount) for item in ledger.applied] == [
        (1000, 1000),
        (430, 1430),
    ]

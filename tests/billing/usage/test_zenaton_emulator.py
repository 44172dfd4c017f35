"""The zenaton book end to end through the emulator: execution time billed in hours at
$0.130, the $10 minimum commitment topped up on the draft invoice, and everything reconciled."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlmodel import Session, select

from billing.reconciliation.reconciler import Reconciler
from models.push_records import MinimumTopUp
from models.stripe_records import StripeCustomerRecord
from tests.fixtures.e2e import World, world

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
# (org, plan, seconds of execution in October)
ORGS = (
    ("zen-low", "payg", 36_000),  # 10 hours = $1.30: topped up to $10
    ("zen-high", "payg", 803_520),  # seed 000: 30 % of a 31-day month = $29.02, no top-up
    ("zen-free", "free", 5_000),  # free plan: nothing billed, no minimum
    ("org_zen_enterprise_example", "enterprise", 3_600_000),  # contract: 10¢/h, $2,000 minimum
)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@pytest.fixture
def w(database_url: str) -> Iterator[World]:
    with world(database_url, OCT) as the_world:
        the_world.sync_catalog("zenaton")
        for org, plan, _ in ORGS:
            the_world.ingest(
                [{"type": "org", "org": org, "book": "zenaton", "plan": plan, "at": iso(OCT)}]
            )
            the_world.provision(org, "zenaton", plan, "month", 0)
        yield the_world


def usage(org: str, event: str, seconds: int, when: datetime) -> dict[str, Any]:
    return {
        "type": "usage",
        "id": event,
        "org": org,
        "meter": "execution_time",
        "quantity": seconds,
        "at": iso(when),
    }


def cycle_invoice(w: World, org: str) -> dict[str, Any]:
    with Session(w.engine) as session:
        record = session.get(StripeCustomerRecord, org)
        assert record is not None
        customer = record.stripe_customer_id
    (invoice,) = [
        inv
        for inv in w.emulator.state.invoices(customer)
        if inv["billing_reason"] == "subscription_cycle"
    ]
    return invoice


def test_a_month_of_zenaton_orgs(w: World) -> None:
    w.advance(datetime(2026, 10, 16, tzinfo=UTC))
    w.ingest(
        [
            usage(org, f"{org}-1", seconds // 2, datetime(2026, 10, 10, tzinfo=UTC))
            for org, _, seconds in ORGS
        ]
    )
    for org, _, _ in ORGS:
        w.push_usage(org)
    w.advance(NOV + timedelta(minutes=5))  # Stripe drafts at midnight; the close runs now
    w.ingest(
        [
            usage(org, f"{org}-2", seconds - seconds // 2, datetime(2026, 10, 20, tzinfo=UTC))
            for org, _, seconds in ORGS
        ]
    )
    closes = {org: w.push_usage(org) for org, _, _ in ORGS}
    assert [m.top_up_amount for m in closes["zen-low"].minimums] == [870]
    assert [m.top_up_amount for m in closes["zen-high"].minimums] == [0]
    assert closes["zen-free"].minimums == ()
    assert [m.top_up_amount for m in closes["org_zen_enterprise_example"].minimums] == [190_000]

    # Late usage inside the grace period moves the top-up by a correction, never twice.
    w.ingest([usage("zen-low", "zen-low-3", 3_600, datetime(2026, 10, 31, 22, tzinfo=UTC))])
    late = w.push_usage("zen-low")
    assert [(m.top_up_amount, m.changed_by) for m in late.minimums] == [(857, -13)]
    assert w.push_usage("zen-low").minimums[0].changed_by == 0

    w.advance(NOV + timedelta(hours=2))  # past the grace period: finalized
    low, high, free, contract = (cycle_invoice(w, org) for org, _, _ in ORGS)
    assert low["status"] in ("open", "paid")

    def lines(invoice: dict[str, Any]) -> list[tuple[str, int, str | None]]:
        return sorted(
            (
                line["metadata"].get("billing_kind") or "usage",
                line["amount"],
                None
                if line["quantity_decimal"] is None
                else f"{Decimal(str(line['quantity_decimal'])).normalize():f}",
            )
            for line in invoice["lines"]["data"]
        )

    # The invoice shows hours: 11 hours at 13¢, then the top-up and its correction.
    assert lines(low) == sorted(
        [("usage", 143, "11"), ("minimum_commitment", 870, "1"), ("minimum_commitment", -13, "1")]
    )
    assert low["total"] == 1000
    assert lines(high) == [("usage", 2902, "223.2")]
    assert free["total"] == 0
    assert contract["total"] == 200_000  # 1,000 hours at 10¢ topped up to $2,000

    reconciler = Reconciler(w.engine, w.gateway, w.books)
    for invoice in (low, high, free, contract):
        outcome = reconciler.reconcile_invoice(invoice["id"], w.now, trigger="test")
        assert outcome.status.value in ("matched", "rounding"), (invoice["customer"], outcome)

    # After the invoice is final nothing changes the top-up again (no duplicate items).
    assert w.push_usage("zen-low").minimums[0].changed_by == 0
    with Session(w.engine) as session:
        rows = session.exec(select(MinimumTopUp).where(MinimumTopUp.org_id == "zen-low")).all()
    assert sorted(row.amount for row in rows) == [-13, 870]

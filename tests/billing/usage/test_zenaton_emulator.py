"""The zenaton book end to end through the emulator: execution time billed in hours at
$0.130, the $10 minimum commitment topped up through the top-up meter (billing.usage.topup), or
on the draft invoice for a subscription provisioned without that meter's item, and everything
reconciled."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlmodel import Session, select

from billing.core.components import MINIMUM_TOPUP
from billing.reconciliation.reconciler import Reconciler
from billing.usage.push import UsagePushOutcome
from billing.usage.push_results import MeterPushAction
from models.push_records import MinimumTopUp, UsagePeriod, UsagePush
from models.stripe_records import (
    StripeCatalogEntry,
    StripeCustomerRecord,
    StripeSubscriptionItemRecord,
    WriteStatus,
)
from stripe_emulator import EmulatorConfig
from tests.fixtures.e2e import World, world

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
# (org, plan, seconds of execution in October)
ORGS = (
    ("zen-low", "payg", 36_000),  # 10 hours = $1.30: topped up to $10
    ("zen-high", "payg", 803_520),  # seed 000: 30 % of a 31-day month = $29.02, no top-up
    ("zen-free", "free", 5_000),  # free plan: nothing billed, no minimum
    ("org_zen_enterprise_example", "enterprise", 3_600_000),  # contract: 10¢/h, $2,000 minimum
    ("zen-cross", "payg", 36_000),  # topped up at the close, then over the minimum in the grace
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


def topups(outcome: UsagePushOutcome) -> list[tuple[Decimal, MeterPushAction]]:
    """The top-up meter events a push sent (cents, cumulative)."""
    return [(r.ledger_quantity, r.action) for r in outcome.results if r.meter == MINIMUM_TOPUP]


def lines(invoice: dict[str, Any]) -> list[tuple[str, int, str | None]]:
    """(what, cents, quantity) per line: `usage` for a metered line (the top-up's included)."""
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


def close_october(w: World) -> dict[str, UsagePushOutcome]:
    """Half the month's usage mid-month, the rest reported at the close in the grace period."""
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
    return {org: w.push_usage(org) for org, _, _ in ORGS}


def test_a_month_of_zenaton_orgs(w: World) -> None:
    closes = close_october(w)
    # The top-up rides the org's meter events (no minimum_commitment item): 1,000 − 130 cents.
    assert topups(closes["zen-low"]) == [(Decimal(870), MeterPushAction.SENT)]
    assert closes["zen-low"].minimums == ()
    assert topups(closes["zen-high"]) == []  # $29.02 of usage: nothing to top up
    assert topups(closes["zen-free"]) == []
    assert closes["zen-free"].minimums == ()
    assert topups(closes["org_zen_enterprise_example"]) == [
        (Decimal(190_000), MeterPushAction.SENT)
    ]
    assert topups(closes["zen-cross"]) == [(Decimal(870), MeterPushAction.SENT)]

    # Late usage inside the grace period sends the new cumulative top-up, never a second one;
    # usage that reaches the minimum sends 0.
    w.ingest(
        [
            usage("zen-low", "zen-low-3", 3_600, datetime(2026, 10, 31, 22, tzinfo=UTC)),
            usage("zen-cross", "zen-cross-3", 300_000, datetime(2026, 10, 31, 22, tzinfo=UTC)),
        ]
    )
    assert topups(w.push_usage("zen-low")) == [(Decimal(857), MeterPushAction.SENT)]
    assert topups(w.push_usage("zen-cross")) == [(Decimal(0), MeterPushAction.SENT)]
    assert topups(w.push_usage("zen-low")) == []  # Stripe already holds 857
    with Session(w.engine) as session:
        sent = session.exec(
            select(UsagePush.identifier, UsagePush.quantity, UsagePush.status)
            .where(UsagePush.org_id == "zen-low", UsagePush.meter == MINIMUM_TOPUP)
            .order_by(UsagePush.revision)  # type: ignore[arg-type]
        ).all()
        assert session.exec(select(MinimumTopUp)).all() == []
    start = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp())
    assert [(i, int(q), s) for i, q, s in sent] == [
        (f"usage:zen-low:minimum_topup:{start}:r1", 870, "done"),
        (f"usage:zen-low:minimum_topup:{start}:r2", 857, "done"),
    ]

    w.advance(NOV + timedelta(hours=2))  # past the grace period: finalized
    low, high, free, contract, cross = (cycle_invoice(w, org) for org, _, _ in ORGS)
    assert low["status"] in ("open", "paid")
    # 11 hours at 13¢, and the top-up line: 857 units at 1¢.
    assert lines(low) == sorted([("usage", 143, "11"), ("usage", 857, "857")])
    assert low["total"] == 1000
    assert lines(high) == [("usage", 0, "0"), ("usage", 2902, "223.2")]
    assert free["total"] == 0
    assert contract["total"] == 200_000  # 1,000 hours at 10¢ topped up to $2,000
    # (36,000 + 300,000) s = 93.33… h at 13¢ = $12.13: over the minimum, the top-up line at 0.
    assert lines(cross) == [("usage", 0, "0"), ("usage", 1213, "93.333333333333")]

    reconciler = Reconciler(w.engine, w.gateway, w.books)
    for invoice in (low, high, free, contract, cross):
        outcome = reconciler.reconcile_invoice(invoice["id"], w.now, trigger="test")
        assert outcome.status.value in ("matched", "rounding"), (invoice["customer"], outcome)

    # Final: the top-up is settled from the invoice's line; nothing is sent or added again.
    again = w.push_usage("zen-low")
    assert topups(again) == []
    assert [(m.top_up_amount, m.changed_by) for m in again.minimums] == [(857, 0)]


def test_late_usage_after_finalization_corrects_the_top_up_by_an_adjustment(w: World) -> None:
    close_october(w)
    w.advance(NOV + timedelta(hours=2))  # finalized with the 870¢ top-up line
    assert lines(cycle_invoice(w, "zen-low")) == [("usage", 130, "10"), ("usage", 870, "870")]
    w.advance(NOV + timedelta(days=3))
    w.ingest([usage("zen-low", "zen-low-late", 7_200, datetime(2026, 10, 30, tzinfo=UTC))])
    late = w.push_usage("zen-low")
    # Two more hours (26¢) on the next invoice, and the top-up corrected by −26¢ beside them.
    assert topups(late) == []
    assert [(m.top_up_amount, m.changed_by) for m in late.minimums] == [(844, -26)]
    with Session(w.engine) as session:
        (row,) = session.exec(select(MinimumTopUp).where(MinimumTopUp.org_id == "zen-low")).all()
    assert (row.amount, row.status, row.stripe_invoice_id) == (-26, "done", None)
    assert all(m.changed_by == 0 for m in w.push_usage("zen-low").minimums)  # exactly once
    with Session(w.engine) as session:
        assert len(session.exec(select(MinimumTopUp)).all()) == 1
    w.advance(datetime(2026, 12, 1, 0, 5, tzinfo=UTC))  # the next close, in the grace period
    assert topups(w.push_usage("zen-low")) == [(Decimal(1000), MeterPushAction.SENT)]  # November
    w.advance(datetime(2026, 12, 1, 2, tzinfo=UTC))  # the next cycle invoice, finalized
    with Session(w.engine) as session:
        record = session.get(StripeCustomerRecord, "zen-low")
        assert record is not None
    december = [
        inv
        for inv in w.emulator.state.invoices(record.stripe_customer_id)
        if inv["billing_reason"] == "subscription_cycle" and inv["created"] > NOV.timestamp()
    ]
    assert [
        sorted(
            (line["metadata"].get("billing_kind"), line["metadata"].get("meter"), line["amount"])
            for line in inv["lines"]["data"]
            if line["amount"] and line["metadata"].get("billing_kind")
        )
        for inv in december
    ] == [[("usage_adjustment", "execution_time", 26), ("usage_adjustment", "minimum", -26)]]
    assert december[0]["total"] == 1000  # November's top-up; October's adjustments net to 0


def test_a_subscription_without_the_top_up_item_keeps_the_invoice_item(
    database_url: str,
) -> None:
    """An org provisioned before the catalog had the top-up price (a catalog synced before this
    change): its minimum is still an invoice item on the draft."""
    with world(database_url, OCT) as w:
        w.sync_catalog("zenaton")
        with Session(w.engine) as session:
            for entry in session.exec(
                select(StripeCatalogEntry).where(StripeCatalogEntry.meter == MINIMUM_TOPUP)
            ).all():
                session.delete(entry)
            session.commit()
        w.ingest([{"type": "org", "org": "old", "book": "zenaton", "plan": "payg", "at": iso(OCT)}])
        w.provision("old", "zenaton", "payg", "month", 0)
        with Session(w.engine) as session:
            components = session.exec(
                select(StripeSubscriptionItemRecord.component).where(
                    StripeSubscriptionItemRecord.org_id == "old"
                )
            ).all()
        assert sorted(components) == ["execution_time"]
        w.advance(datetime(2026, 10, 16, tzinfo=UTC))
        w.ingest([usage("old", "old-1", 36_000, datetime(2026, 10, 10, tzinfo=UTC))])
        w.push_usage("old")
        w.advance(NOV + timedelta(minutes=5))
        close = w.push_usage("old")
        assert topups(close) == []
        assert [(m.top_up_amount, m.changed_by) for m in close.minimums] == [(870, 870)]
        w.advance(NOV + timedelta(hours=2))
        invoice = cycle_invoice(w, "old")
        assert lines(invoice) == sorted([("usage", 130, "10"), ("minimum_commitment", 870, "1")])
        outcome = Reconciler(w.engine, w.gateway, w.books).reconcile_invoice(
            invoice["id"], w.now, trigger="test"
        )
        assert outcome.status.value == "matched"


def _leave_started(w: World, org: str) -> None:
    """A crash after the top-up's meter event reached Stripe, before its row was completed."""
    with Session(w.engine) as session:
        (row,) = session.exec(
            select(UsagePush).where(UsagePush.org_id == org, UsagePush.meter == MINIMUM_TOPUP)
        ).all()
        row.status = WriteStatus.STARTED
        session.add(row)
        (state,) = session.exec(
            select(UsagePeriod).where(UsagePeriod.org_id == org, UsagePeriod.meter == MINIMUM_TOPUP)
        ).all()
        state.sent_quantity = None
        session.add(state)
        session.commit()


def test_a_top_up_left_started_is_resent_with_the_same_identifier(w: World) -> None:
    close_october(w)
    _leave_started(w, "zen-low")
    again = w.push_usage("zen-low")
    assert [
        (r.ledger_quantity, r.action, r.revision) for r in again.results if r.meter == MINIMUM_TOPUP
    ] == [(Decimal(870), MeterPushAction.SENT, 1)]
    w.advance(NOV + timedelta(hours=2))
    assert lines(cycle_invoice(w, "zen-low")) == [("usage", 130, "10"), ("usage", 870, "870")]


def test_a_top_up_left_started_when_the_invoice_finalized_ends_settled(w: World) -> None:
    close_october(w)
    _leave_started(w, "zen-low")
    w.advance(NOV + timedelta(hours=2))  # finalized before the row was completed
    after = w.push_usage("zen-low")
    assert topups(after) == []
    # What the invoice's top-up line billed (870¢) is booked: no adjustment, no failure.
    assert [(m.top_up_amount, m.changed_by, m.error) for m in after.minimums] == [(870, 0, None)]
    with Session(w.engine) as session:
        (row,) = session.exec(
            select(UsagePush).where(UsagePush.org_id == "zen-low", UsagePush.meter == MINIMUM_TOPUP)
        ).all()
        assert (row.status, row.error) == ("done", "superseded: the invoice is final")
        assert session.exec(select(MinimumTopUp)).all() == []
    assert after.action != "failed"


def test_a_draft_not_showing_the_top_up_yet_is_projected_from_its_meter(database_url: str) -> None:
    """Stripe's drafts may lag its meters: the draft's top-up line is judged on what the top-up
    meter holds (1¢ a unit), like a meter line, so a right draft is matched and never held."""
    with world(database_url, OCT, EmulatorConfig(draft_follows_usage=False)) as w:
        w.sync_catalog("zenaton")
        w.ingest(
            [{"type": "org", "org": "lagged", "book": "zenaton", "plan": "payg", "at": iso(OCT)}]
        )
        w.provision("lagged", "zenaton", "payg", "month", 0)
        w.advance(datetime(2026, 10, 16, tzinfo=UTC))
        w.ingest([usage("lagged", "lagged-1", 36_000, datetime(2026, 10, 10, tzinfo=UTC))])
        w.advance(NOV + timedelta(minutes=5))
        assert topups(w.push_usage("lagged")) == [(Decimal(870), MeterPushAction.SENT)]
        draft = cycle_invoice(w, "lagged")
        assert (draft["status"], draft["total"]) == ("draft", 0)  # usage not shown yet
        outcome = Reconciler(w.engine, w.gateway, w.books).reconcile_invoice(
            draft["id"], w.now, trigger="test"
        )
        assert (outcome.status.value, outcome.held) == ("matched", False)
        minimum = next(line for line in outcome.lines if line.component == "minimum")
        assert (minimum.stripe_amount, minimum.expected_amount) == (870, 870)
        assert minimum.trace["projected"]["projected_amount"] == 870

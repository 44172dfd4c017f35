"""Seat sync and usage push against the Stripe emulator: a month of one org, end to end.

Stripe's invoice must say what the ledger's expected invoice says; running anything twice
changes nothing; a crash between a Stripe call and its record is resolved, not repeated.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlmodel import Session, select

from billing.core.periods import Period, month_period, to_unix
from billing.ledger.queries import expected_invoice
from billing.pricing.proration import prorated_amount
from billing.reconciliation.reconciler import Reconciler
from models.push_records import SeatPush, UsageAdjustment, UsagePeriod, UsagePush
from models.stripe_records import (
    StripeCustomerRecord,
    StripeSubscriptionItemRecord,
    StripeSubscriptionRecord,
    WriteStatus,
)
from tests.fixtures.e2e import World, world

OCT = datetime(2026, 10, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 10, day, hour, minute, second, tzinfo=UTC)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@pytest.fixture(params=["stream", "v1"])
def w(database_url: str, request: pytest.FixtureRequest) -> Iterator[World]:
    """Each test runs under both meter transports (billing.usage.meter_send)."""
    with world(database_url, OCT, transport=request.param) as the_world:
        the_world.sync_catalog("devtools")
        the_world.ingest(
            [
                {
                    "type": "org",
                    "org": "acme",
                    "book": "devtools",
                    "plan": "team",
                    "interval": "year",
                    "seats": 10,
                    "at": iso(OCT),
                }
            ]
        )
        the_world.provision("acme", "devtools", "team", "year", 10)
        yield the_world


def usage(event_id: str, meter: str, quantity: int, when: datetime) -> dict[str, object]:
    return {
        "type": "usage",
        "id": event_id,
        "org": "acme",
        "meter": meter,
        "quantity": quantity,
        "at": iso(when),
    }


def requests(w: World) -> int:
    return int(w.emulator.state.stats()["requests_total"])


def test_a_month_of_seats_and_usage_invoices_what_the_ledger_expects(w: World) -> None:
    # Seat changes inside one 5-minute window coalesce into one Stripe update (10 → 15).
    w.advance(at(3, 12, 10))
    w.ingest(
        [
            {"type": "seats", "org": "acme", "count": 12, "at": iso(at(3, 12, 0, 30))},
            {"type": "seats", "org": "acme", "count": 15, "at": iso(at(3, 12, 2))},
            {"type": "seats", "org": "acme", "count": 14, "at": iso(at(3, 12, 3))},
        ]
    )
    first = w.sync_seats("acme")
    assert first.action == "updated"
    assert [(p.from_quantity, p.to_quantity, p.proration_at) for p in first.pushes] == [
        (10, 15, at(3, 12, 2))
    ]
    assert first.stripe_quantity_after == 15
    before = requests(w)
    again = w.sync_seats("acme")
    assert again.action == "in_sync"
    assert requests(w) - before == 1  # one read, no write

    # Usage over the month, pushed as cumulative totals; unchanged totals are not resent.
    w.advance(at(10))
    w.ingest(
        [
            usage("m1", "copilot_messages", 400, at(2)),
            usage("m2", "copilot_messages", 350, at(9)),
            usage("r1", "runner_minutes", 1234, at(5)),
            {"type": "resources", "org": "acme", "stack": "eks", "count": 1000, "at": iso(at(1))},
        ]
    )
    pushed = w.push_usage("acme")
    assert pushed.action == "pushed"
    assert pushed.meter_events_sent == 3
    assert w.push_usage("acme").action == "unchanged"

    # A correction before the period ends: a new revision replaces the old total.
    w.advance(at(20))
    w.ingest([usage("m3", "copilot_messages", 250, at(19))])
    assert {r.meter: r.revision for r in w.push_usage("acme").results if r.action == "sent"} == {
        "copilot_messages": 2,
        "iac_resource_hours": 2,
    }

    # The period ends: Stripe drafts the invoice; a late event arrives in the grace period.
    w.advance(NOV + timedelta(minutes=5))
    w.ingest([usage("m4", "copilot_messages", 100, at(31, 23))])
    grace = w.push_usage("acme")
    assert any(r.action == "sent" and r.meter == "copilot_messages" for r in grace.results)
    w.advance(NOV + timedelta(hours=2))  # past the grace period: final

    (invoice,) = [
        inv for inv in w.emulator.state.invoices() if inv["billing_reason"] == "subscription_cycle"
    ]
    assert invoice["status"] in ("open", "paid")
    with Session(w.engine) as session:
        expected = expected_invoice(session, "acme", month_period("2026-10"), w.books)
    amounts = {line.code: line.amount for line in expected.lines}
    stripe_lines = invoice["lines"]["data"]
    metered = {
        line["pricing"]["price_details"]["price"]: line
        for line in stripe_lines
        if not line["parent"]["subscription_item_details"]["proration"]
    }
    quantities = sorted(
        Decimal(str(line["quantity_decimal"]))
        for line in metered.values()
        if line["amount"] or line["quantity_decimal"]
    )
    # 1,100 messages, 1,234 minutes, 1,000 resources × 744 hours.
    assert Decimal(1100) in quantities
    assert Decimal(1234) in quantities
    assert Decimal(744000) in quantities
    usage_total = sum(line["amount"] for line in metered.values())
    assert (
        usage_total
        == amounts["copilot_messages"] + amounts["runner_minutes"] + amounts["iac_resource_hours"]
    )
    prorations = sum(
        line["amount"]
        for line in stripe_lines
        if line["parent"]["subscription_item_details"]["proration"]
    )
    assert abs(prorations - amounts["seat_proration"]) <= 1  # credit and debit rounded apart
    outcome = Reconciler(w.engine, w.gateway, w.books).reconcile_invoice(
        invoice["id"], w.now, trigger="test"
    )
    assert outcome.status.value in ("matched", "rounding")

    # After the invoice is final, a late event becomes an adjustment on the next invoice.
    w.ingest([usage("m5", "copilot_messages", 50, at(31, 23, 30))])
    late = w.push_usage("acme")
    (adjusted,) = [r for r in late.results if r.action == "adjusted"]
    assert adjusted.meter == "copilot_messages"
    assert adjusted.adjustment_amount == 100  # 50 messages × 2 cents
    assert w.push_usage("acme").action == "unchanged"
    with Session(w.engine) as session:
        row = session.exec(select(UsageAdjustment)).one()
        assert row.status == WriteStatus.DONE
        assert row.stripe_invoice_item_id is not None
    item = w.emulator.state.get(row.stripe_invoice_item_id)
    assert item["amount"] == 100
    assert item["invoice"] is None  # pending: it lands on the next invoice
    assert item["metadata"]["billing_kind"] == "usage_adjustment"
    with Session(w.engine) as session:
        period = session.exec(
            select(UsagePeriod).where(
                UsagePeriod.meter == "copilot_messages", UsagePeriod.period_start_at == OCT
            )
        ).one()
        assert period.invoiced_quantity == Decimal(1100)
        assert period.adjusted_quantity == Decimal(50)


def test_a_seat_step_synced_after_the_period_end_is_expected_on_the_next_invoice(
    w: World,
) -> None:
    w.advance(NOV - timedelta(minutes=1))
    w.ingest([{"type": "seats", "org": "acme", "count": 13, "at": iso(at(31, 23, 58))}])
    w.advance(NOV + timedelta(minutes=10))  # Stripe drafted October's invoice at midnight
    synced = w.sync_seats("acme")
    assert [(p.from_quantity, p.to_quantity) for p in synced.pushes] == [(10, 13)]
    w.advance(NOV + timedelta(hours=2))
    (october,) = [
        inv for inv in w.emulator.state.invoices() if inv["billing_reason"] == "subscription_cycle"
    ]
    assert not any(
        line["parent"]["subscription_item_details"]["proration"]
        for line in october["lines"]["data"]
    )
    outcome = Reconciler(w.engine, w.gateway, w.books).reconcile_invoice(
        october["id"], w.now, trigger="test"
    )
    assert outcome.status.value == "matched"
    # Not lost: the proration waits for November's invoice.
    with Session(w.engine) as session:
        sub = session.get(StripeSubscriptionRecord, "acme")
        assert sub is not None
        assert sub.stripe_subscription_id is not None
    upcoming = w.gateway.preview_invoice(
        stripe_customer_id=_customer(w), stripe_subscription_id=sub.stripe_subscription_id
    )
    prorated = sum(line.amount for line in upcoming.lines if line.proration)
    term = Period(OCT, datetime(2027, 10, 1, tzinfo=UTC))
    assert abs(prorated - prorated_amount(3, 900, term, at(31, 23, 58))) <= 1


def test_a_seat_push_left_started_is_resolved_by_reading_stripe(w: World) -> None:
    w.advance(at(3, 12, 10))
    w.ingest([{"type": "seats", "org": "acme", "count": 11, "at": iso(at(3, 12, 1))}])
    assert w.sync_seats("acme").stripe_quantity_after == 11
    with Session(w.engine) as session:  # simulate a crash after Stripe answered
        row = session.exec(select(SeatPush)).one()
        row.status = WriteStatus.STARTED
        session.add(row)
        session.commit()
    before = w.emulator.state.stats()["requests_by_route"].get(
        "POST /v1/subscription_items/{id}", 0
    )
    outcome = w.sync_seats("acme")
    assert [p.status for p in outcome.pushes] == ["done"]
    after = w.emulator.state.stats()["requests_by_route"].get("POST /v1/subscription_items/{id}", 0)
    assert after == before  # resolved from Stripe's quantity, not sent again
    pending = [inv for inv in w.emulator.state.invoices() if inv["status"] == "draft"]
    assert pending == []


def test_a_usage_push_left_started_is_resent_with_the_same_identifier(w: World) -> None:
    w.advance(at(5))
    w.ingest([usage("m1", "copilot_messages", 600, at(4))])
    w.push_usage("acme")
    with Session(w.engine) as session:
        row = session.exec(select(UsagePush).where(UsagePush.meter == "copilot_messages")).one()
        row.status = WriteStatus.STARTED
        session.add(row)
        state = session.exec(
            select(UsagePeriod).where(UsagePeriod.meter == "copilot_messages")
        ).one()
        state.sent_quantity = None
        session.add(state)
        session.commit()
    outcome = w.push_usage("acme")
    (sent,) = [r for r in outcome.results if r.meter == "copilot_messages"]
    assert sent.action == "sent"
    # the same revision and identifier: Stripe answers the repeat from its idempotency record
    # (or drops the known identifier) and counts it once
    assert sent.revision == 1
    total = w.emulator.state.meter_total(_customer(w), "devtools.copilot_messages", 0, 2**31)
    assert total == 600


def _customer(w: World) -> str:
    with Session(w.engine) as session:
        record = session.get(StripeCustomerRecord, "acme")
        assert record is not None
        assert record.stripe_customer_id is not None
        return record.stripe_customer_id


def test_a_quantity_changed_by_hand_in_stripe_is_corrected_and_reported(w: World) -> None:
    w.advance(at(4))
    item = _seat_item(w)
    w.emulator.state.set_subscription_quantity(item, 25)
    outcome = w.sync_seats("acme")
    assert outcome.stripe_quantity_before == 25
    assert outcome.stripe_quantity_after == 10
    assert [(p.kind, p.from_quantity, p.to_quantity) for p in outcome.pushes] == [
        ("correction", 25, 10)
    ]
    assert "Stripe held 25 seats where the ledger bills 10" in outcome.problems[0]
    assert w.sync_seats("acme").action == "in_sync"


def test_a_decrease_takes_effect_at_the_renewal(database_url: str) -> None:
    with world(database_url, OCT) as w:
        w.sync_catalog("devtools")
        w.ingest(
            [
                {
                    "type": "org",
                    "org": "monthly",
                    "book": "devtools",
                    "plan": "free",
                    "interval": "month",
                    "seats": 8,
                    "at": iso(OCT),
                }
            ]
        )
        w.provision("monthly", "devtools", "free", "month", 8)
        w.advance(at(10))
        w.ingest([{"type": "seats", "org": "monthly", "count": 5, "at": iso(at(9))}])
        # Mid-term the billed quantity stays at the term's high-water mark.
        assert w.sync_seats("monthly").stripe_quantity_after == 8
        # Within the hour before the term renews, Stripe gets the count of the renewal.
        w.advance(NOV - timedelta(minutes=30))
        renewal = w.sync_seats("monthly")
        assert [(p.kind, p.from_quantity, p.to_quantity) for p in renewal.pushes] == [
            ("renewal", 8, 5)
        ]
        w.advance(NOV + timedelta(hours=2))
        (november,) = [
            inv
            for inv in w.emulator.state.invoices()
            if inv["billing_reason"] == "subscription_cycle"
        ]
        seat_lines = [
            line
            for line in november["lines"]["data"]
            if line["quantity"] in (5, 8) and line["period"]["start"] == to_unix(NOV)
        ]
        assert [line["quantity"] for line in seat_lines] == [5]
        assert w.sync_seats("monthly").action == "in_sync"


def _seat_item(w: World) -> str:
    with Session(w.engine) as session:
        row = session.exec(
            select(StripeSubscriptionItemRecord).where(
                StripeSubscriptionItemRecord.org_id == "acme",
                StripeSubscriptionItemRecord.component == "seats",
            )
        ).one()
        return row.stripe_subscription_item_id

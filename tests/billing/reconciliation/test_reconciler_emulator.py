"""Reconciliation end to end against the Stripe emulator: a month run on a test clock, and each
kind of discrepancy caused in Stripe and caught, classified and (on a draft) held."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import stripe
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from billing.core.meters import Interval
from billing.core.periods import month_period, to_unix
from billing.ledger.ingest import Ingestor
from billing.pricing.book import load_book
from billing.pricing.book_cache import BookCache
from billing.reconciliation.match import Status
from billing.reconciliation.price_drift import PriceDriftCheck
from billing.reconciliation.reconciler import Reconciler, ReconciliationOutcome, statuses_of
from billing.setup.catalog import CatalogSync
from billing.setup.provisioning import OrgToProvision, Provisioner
from billing.stripe_gateway import StripeConfig, StripeGateway
from models.db import unit_of_work
from models.reconciliation import Reconciliation, ReconciliationLine
from models.stripe_records import StripeCatalogEntry
from stripe_emulator import EmulatorConfig, EmulatorServer

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
JAN_20 = datetime(2026, 1, 20, tzinfo=UTC)
FEB_1 = datetime(2026, 2, 1, tzinfo=UTC)
GRACE = timedelta(hours=1)


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig()) as server:
        yield server


@dataclass
class World:
    """One catalog-synced emulator, a ledger, and an org on its own test clock."""

    emulator: EmulatorServer
    engine: Engine
    gateway: StripeGateway
    reconciler: Reconciler
    client: stripe.StripeClient

    def org(self, org_id: str, *, seats: int = 10, usage: int = 800) -> Org:
        clock = self.client.v1.test_helpers.test_clocks.create({"frozen_time": to_unix(JAN_1)})
        lines = [
            {
                "type": "org",
                "org": org_id,
                "plan": "team",
                "interval": "year",
                "seats": seats,
                "at": "2026-01-01T00:00:00Z",
            },
            {
                "type": "usage",
                "id": f"{org_id}-e1",
                "org": org_id,
                "meter": "copilot_messages",
                "quantity": usage // 2,
                "at": "2026-01-10T00:00:00Z",
            },
            {
                "type": "usage",
                "id": f"{org_id}-e2",
                "org": org_id,
                "meter": "copilot_messages",
                "quantity": usage - usage // 2,
                "at": "2026-01-15T00:00:00Z",
            },
        ]
        with unit_of_work(self.engine) as session:
            outcome = Ingestor(session).ingest([json.dumps(line) for line in lines], JAN_20)
            assert outcome.ok, outcome.errors
        provisioned = Provisioner(self.gateway, self.engine).provision(
            OrgToProvision(
                org_id=org_id,
                book="devtools",
                plan="team",
                interval=Interval.YEAR,
                term_start_at=JAN_1,
                seat_count=seats,
                stripe_test_clock_id=clock.id,
            ),
            JAN_1,
        )
        return Org(
            self,
            org_id,
            clock.id,
            provisioned.stripe_customer_id,
            usage,
            provisioned.stripe_subscription_item_ids["seats"],
        )


@dataclass
class Org:
    world: World
    org_id: str
    clock_id: str
    stripe_customer_id: str
    usage: int
    seat_item_id: str

    def advance(self, at: datetime) -> None:
        self.world.emulator.state.advance_clock(self.clock_id, to_unix(at))

    def push_usage(self, value: int | None = None) -> None:
        """What the usage push does: the cumulative period total to the `last` meter."""
        self.advance(JAN_20)
        self.world.gateway.create_meter_event(
            event_name="devtools.copilot_messages",
            stripe_customer_id=self.stripe_customer_id,
            value=self.usage if value is None else value,
            timestamp_at=JAN_20,
            identifier=f"{self.org_id}:copilot_messages:2026-01:r1",
        )

    def invoices(self) -> list[dict]:
        return self.world.emulator.state.invoices(self.stripe_customer_id)

    def invoice(self, reason: str, period_end: datetime | None = None) -> dict:
        found = [
            i
            for i in self.invoices()
            if i["billing_reason"] == reason
            and (period_end is None or i["period_end"] == to_unix(period_end))
        ]
        assert len(found) == 1, [(i["billing_reason"], i["period_end"]) for i in self.invoices()]
        return found[0]

    def reconcile(
        self, invoice: dict, at: datetime, *, hold: bool = False
    ) -> ReconciliationOutcome:
        trigger = "invoice.created" if hold else "cli"
        return self.world.reconciler.reconcile_invoice(
            invoice["id"], at, trigger=trigger, hold=hold
        )


@pytest.fixture
def world(emulator: EmulatorServer, engine: Engine) -> World:
    return build_world(emulator, engine)


def build_world(emulator: EmulatorServer, engine: Engine) -> World:
    """A devtools catalog synced into `emulator`, and a reconciler on `engine`."""
    gateway = StripeGateway(
        StripeConfig(api_key="sk_test_emulator", api_base=emulator.url, max_network_retries=0)
    )
    CatalogSync(gateway, engine).sync(load_book("devtools"), JAN_1, repair=True)
    client = stripe.StripeClient(
        "sk_test_emulator",
        base_addresses={"api": emulator.url, "meter_events": emulator.url},
        max_network_retries=0,
    )
    return World(emulator, engine, gateway, Reconciler(engine, gateway, BookCache()), client)


def _lines(reconciliation_id: int, engine: Engine) -> list[ReconciliationLine]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(ReconciliationLine)
                .where(ReconciliationLine.reconciliation_id == reconciliation_id)
                .order_by(ReconciliationLine.position)
            ).all()
        )


def test_a_clean_month_reconciles_matched_from_first_invoice_to_final(world: World) -> None:
    org = world.org("org_clean")
    first = org.reconcile(org.invoice("subscription_create"), JAN_1)
    assert first.status is Status.MATCHED
    assert statuses_of(first.lines) == {"seats": "matched"}

    org.push_usage()
    org.advance(FEB_1 + timedelta(seconds=10))
    draft = org.invoice("subscription_cycle", FEB_1)
    assert draft["status"] == "draft"
    on_draft = org.reconcile(draft, FEB_1, hold=True)
    assert on_draft.status in (Status.MATCHED, Status.ROUNDING)
    assert not on_draft.held
    by_component = {line.component: line for line in on_draft.lines}
    assert by_component["copilot_messages"].expected_amount == 600  # (800 − 500) × 2¢
    assert by_component["copilot_messages"].stripe_amount == 600
    assert "seats" not in by_component  # annual seats are not renewed on a monthly invoice

    org.advance(FEB_1 + GRACE + timedelta(seconds=10))
    final = org.invoice("subscription_cycle", FEB_1)
    assert final["status"] in ("open", "paid")
    on_final = org.reconcile(final, FEB_1 + GRACE)
    assert on_final.status in (Status.MATCHED, Status.ROUNDING)
    assert on_final.reconciliation_id != on_draft.reconciliation_id  # appended, not replaced

    (copilot,) = [
        line
        for line in _lines(on_final.reconciliation_id, world.engine)
        if line.component == "copilot_messages"
    ]
    trace = json.loads(copilot.trace_json)
    assert trace["expected"]["events"] == {
        "source": "usage events",
        "count": 2,
        "quantity_total": "800",
    }
    assert trace["expected"]["included"] == "500"
    assert [t["quantity"] for t in trace["expected"]["tiers"]] == ["500", "300"]
    assert trace["stripe"]["lines"][0]["quantity"] == "800"
    assert trace["stripe"]["lines"][0]["amount"] == 600


def test_a_price_edited_in_stripe_is_a_mismatch_on_the_first_invoice(world: World) -> None:
    with Session(world.engine) as session:
        seat = session.exec(
            select(StripeCatalogEntry).where(
                StripeCatalogEntry.catalog_key == "price:devtools:team:seats:year"
            )
        ).one()
    assert seat.stripe_price_id
    world.emulator.state.set_price_amount(seat.stripe_price_id, Decimal(1200))
    org = world.org("org_price_edit")
    outcome = org.reconcile(org.invoice("subscription_create"), JAN_1)
    assert outcome.status is Status.MISMATCHED
    (line,) = outcome.lines
    assert (line.component, line.expected_amount, line.stripe_amount) == ("seats", 9000, 12000)
    assert line.status is Status.MISMATCHED


def test_a_skipped_usage_push_is_caught_on_the_draft_and_the_draft_is_held(world: World) -> None:
    org = world.org("org_no_push")
    org.advance(FEB_1 + timedelta(seconds=10))
    draft = org.invoice("subscription_cycle", FEB_1)
    outcome = org.reconcile(draft, FEB_1, hold=True)
    assert outcome.status is Status.MISMATCHED
    assert statuses_of(outcome.lines)["copilot_messages"] == "mismatched"
    assert outcome.held
    org.advance(FEB_1 + 3 * GRACE)
    after = org.invoice("subscription_cycle", FEB_1)
    assert after["status"] == "draft"  # held: not finalized at the end of the grace period
    assert after["auto_advance"] is False


def test_usage_pushed_during_the_grace_period_does_not_hold_the_draft(world: World) -> None:
    org = world.org("org_late_push")
    org.advance(FEB_1 + timedelta(seconds=10))
    world.gateway.create_meter_event(
        event_name="devtools.copilot_messages",
        stripe_customer_id=org.stripe_customer_id,
        value=org.usage,
        timestamp_at=FEB_1 - timedelta(seconds=1),
        identifier="org_late_push:copilot_messages:2026-01:r1",
    )
    outcome = org.reconcile(org.invoice("subscription_cycle", FEB_1), FEB_1, hold=True)
    assert not outcome.held
    assert outcome.status is Status.MATCHED
    org.advance(FEB_1 + GRACE + timedelta(seconds=10))
    final = org.reconcile(org.invoice("subscription_cycle", FEB_1), FEB_1 + GRACE)
    assert final.status is Status.MATCHED
    assert {line.component: line.stripe_amount for line in final.lines}["copilot_messages"] == 600


def test_an_invoice_item_added_by_hand_is_unexpected_in_stripe(world: World) -> None:
    org = world.org("org_manual_item")
    org.push_usage()
    world.emulator.state.add_invoice_item(org.stripe_customer_id, 1234, "Goodwill fee")
    org.advance(FEB_1 + timedelta(seconds=10))
    outcome = org.reconcile(org.invoice("subscription_cycle", FEB_1), FEB_1, hold=True)
    assert outcome.status is Status.UNEXPECTED_IN_STRIPE
    unexpected = [line for line in outcome.lines if line.status is Status.UNEXPECTED_IN_STRIPE]
    assert [(u.component, u.stripe_amount) for u in unexpected] == [("unexpected", 1234)]
    assert "Goodwill fee" in unexpected[0].explanation
    assert outcome.held


def test_a_seat_change_made_in_stripe_shows_at_the_renewal(world: World) -> None:
    org = world.org("org_seat_drift")
    world.emulator.state.set_subscription_quantity(org.seat_item_id, 12)
    renewal_at = datetime(2027, 1, 1, tzinfo=UTC)
    org.advance(renewal_at + timedelta(seconds=10))
    outcome = org.reconcile(org.invoice("subscription_cycle", renewal_at), renewal_at, hold=True)
    seats = next(line for line in outcome.lines if line.component == "seats")
    assert seats.status is Status.MISMATCHED
    assert (seats.expected_quantity, seats.stripe_quantity) == (Decimal(10), Decimal(12))
    assert (seats.expected_amount, seats.stripe_amount) == (9000, 10800)
    assert outcome.held


def test_reconciling_a_period_finds_its_invoices(world: World) -> None:
    org = world.org("org_period")
    org.push_usage()
    org.advance(FEB_1 + GRACE + timedelta(seconds=10))
    outcomes = world.reconciler.reconcile_period(month_period("2026-01"), FEB_1 + GRACE)
    mine = [o for o in outcomes if o.org_id == "org_period"]
    assert len(mine) == 2  # the first invoice (seats) and the cycle invoice at 1 February
    assert {o.status for o in mine} == {Status.MATCHED}
    with Session(world.engine) as session:
        rows = session.exec(
            select(Reconciliation).where(Reconciliation.org_id == "org_period")
        ).all()
    assert {row.period for row in rows} == {"2026-01"}


def test_price_drift_check_reports_an_edited_price_and_creates_nothing(world: World) -> None:
    check = PriceDriftCheck(world.engine, world.gateway)
    clean = check.check(load_book("devtools"), JAN_1)
    assert (clean.drift_count, clean.verified_count) == (0, 17)  # the top-up price included
    with Session(world.engine) as session:
        seat = session.exec(
            select(StripeCatalogEntry).where(
                StripeCatalogEntry.catalog_key == "price:devtools:team:seats:year"
            )
        ).one()
    assert seat.stripe_price_id
    prices_before = len(world.client.v1.prices.list({"limit": 100}).data)
    world.emulator.state.set_price_amount(seat.stripe_price_id, Decimal(1000))
    drifted = check.check(load_book("devtools"), JAN_20)
    assert drifted.drift_count == 1
    assert len(world.client.v1.prices.list({"limit": 100}).data) == prices_before


def test_the_sweep_reconciles_missed_invoices_once_per_status_and_drafts_each_time(
    world: World,
) -> None:
    org = world.org("org_sweep")
    org.push_usage()
    org.advance(FEB_1 + timedelta(seconds=10))
    first = world.reconciler.sweep(FEB_1 + timedelta(seconds=10), timedelta(days=40))
    mine = [o for o in first.reconciled if o.org_id == "org_sweep"]
    assert {o.status for o in mine} == {Status.MATCHED}
    assert len(mine) == 2  # the first invoice and the new draft
    again = world.reconciler.sweep(FEB_1 + timedelta(seconds=20), timedelta(days=40))
    # The final first invoice is not read again; the draft is (it can still change).
    rechecked = [o for o in again.reconciled if o.org_id == "org_sweep"]
    assert [o.stripe_invoice_id for o in rechecked] == [
        org.invoice("subscription_cycle", FEB_1)["id"]
    ]
    assert [(o.status, o.held) for o in rechecked] == [(Status.MATCHED, False)]
    org.advance(FEB_1 + GRACE + timedelta(seconds=10))
    after = world.reconciler.sweep(FEB_1 + GRACE + timedelta(seconds=10), timedelta(days=40))
    assert [o.stripe_invoice_id for o in after.reconciled if o.org_id == "org_sweep"] == [
        org.invoice("subscription_cycle", FEB_1)["id"]
    ]

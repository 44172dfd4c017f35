"""Provisioning: one customer and one mixed-interval subscription per org, safe to run twice."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from billing.core.errors import TransientBillingError
from billing.core.meters import Interval
from billing.pricing.book import load_book
from billing.setup.catalog import CatalogSync
from billing.setup.provisioning import (
    OrgToProvision,
    ProvisionAction,
    Provisioner,
    ProvisioningError,
)
from models.stripe_records import (
    StripeCustomerRecord,
    StripeSubscriptionItemRecord,
    StripeSubscriptionRecord,
    WriteStatus,
)
from tests.fixtures.fake_stripe import FakeStripe

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TEAM = OrgToProvision(
    org_id="org_team",
    book="devtools",
    plan="team",
    interval=Interval.YEAR,
    term_start_at=NOW,
    seat_count=10,
    email="billing@team.example",
)


@pytest.fixture
def fake(engine: Engine) -> FakeStripe:
    stripe = FakeStripe()
    sync = CatalogSync(stripe, engine)
    sync.sync(load_book("devtools"), NOW)
    sync.sync(load_book("zenaton"), NOW)
    stripe.calls.clear()
    return stripe


def _items(engine: Engine, org_id: str) -> dict[str, StripeSubscriptionItemRecord]:
    with Session(engine) as session:
        rows = session.exec(
            select(StripeSubscriptionItemRecord).where(
                StripeSubscriptionItemRecord.org_id == org_id
            )
        ).all()
    return {row.component: row for row in rows}


def test_provision_creates_customer_and_one_mixed_interval_subscription(
    engine: Engine, fake: FakeStripe
) -> None:
    outcome = Provisioner(fake, engine).provision(TEAM, NOW)

    assert outcome.customer_action is ProvisionAction.CREATED
    assert outcome.subscription_action is ProvisionAction.CREATED
    assert fake.writes() == [
        ("create_customer", "provision:customer:org_team"),
        ("create_subscription", "provision:subscription:org_team"),
    ]
    customer = fake.customers[outcome.stripe_customer_id]
    assert customer.metadata["org_id"] == "org_team"
    assert customer.email == "billing@team.example"
    sub = fake.subscriptions[outcome.stripe_subscription_id]
    assert sub.metadata["org_id"] == "org_team"
    intervals = {fake.prices[str(i.stripe_price_id)].terms.interval for i in sub.items}
    assert intervals == {"year", "month"}
    seats = next(i for i in sub.items if i.metadata["component"] == "seats")
    assert seats.quantity == 10
    assert fake.prices[str(seats.stripe_price_id)].lookup_key == "devtools:team:seats:year"

    items = _items(engine, "org_team")
    assert set(items) == {"seats", "copilot_messages", "runner_minutes", "iac_resource_hours"}
    assert items["seats"].interval == "year"
    assert items["seats"].quantity == 10
    assert items["seats"].current_period_end_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert items["runner_minutes"].interval == "month"
    assert items["runner_minutes"].quantity is None
    assert dict(outcome.stripe_subscription_item_ids) == {
        k: v.stripe_subscription_item_id for k, v in items.items()
    }
    with Session(engine) as session:
        customer_row = session.get(StripeCustomerRecord, "org_team")
        sub_row = session.get(StripeSubscriptionRecord, "org_team")
    assert customer_row is not None
    assert customer_row.status == WriteStatus.DONE
    assert customer_row.stripe_customer_id == outcome.stripe_customer_id
    assert sub_row is not None
    assert sub_row.status == WriteStatus.DONE
    assert sub_row.term_start_at == NOW


def test_provision_twice_writes_nothing_the_second_time(engine: Engine, fake: FakeStripe) -> None:
    first = Provisioner(fake, engine).provision(TEAM, NOW)
    writes = fake.writes()
    second = Provisioner(fake, engine).provision(TEAM, NOW)
    assert second.customer_action is ProvisionAction.EXISTING
    assert second.subscription_action is ProvisionAction.EXISTING
    assert second.stripe_subscription_id == first.stripe_subscription_id
    assert second.stripe_subscription_item_ids == first.stripe_subscription_item_ids
    assert fake.writes() == writes
    assert len(fake.customers) == 1
    assert len(fake.subscriptions) == 1


def test_contract_org_gets_its_contract_prices(engine: Engine, fake: FakeStripe) -> None:
    org = OrgToProvision(
        "org_enterprise_example", "devtools", "enterprise", Interval.YEAR, NOW, seat_count=40
    )
    outcome = Provisioner(fake, engine).provision(org, NOW)
    sub = fake.subscriptions[outcome.stripe_subscription_id]
    keys = {
        i.metadata["component"]: fake.prices[str(i.stripe_price_id)].lookup_key for i in sub.items
    }
    assert keys == {
        "seats": "devtools:enterprise:seats:year:contract:org_enterprise_example",
        "copilot_messages": "devtools:enterprise:copilot_messages:contract:org_enterprise_example",
        "runner_minutes": "devtools:enterprise:runner_minutes:contract:org_enterprise_example",
        "iac_resource_hours": "devtools:enterprise:iac_resource_hours",
        # The contract's $500 minimum: the plan's top-up price, 1¢ per unit (billing.usage.topup).
        "minimum_topup": "devtools:enterprise:minimum_topup",
    }


def test_plan_without_seats_gets_only_metered_items(engine: Engine, fake: FakeStripe) -> None:
    org = OrgToProvision("org_zen", "zenaton", "payg", Interval.MONTH, NOW, seat_count=0)
    outcome = Provisioner(fake, engine).provision(org, NOW)
    # The execution meter, and the $10 minimum's top-up meter (billing.usage.topup).
    assert set(outcome.stripe_subscription_item_ids) == {"execution_time", "minimum_topup"}


def test_unsynced_catalog_is_refused_before_any_write(engine: Engine) -> None:
    fake = FakeStripe()
    with pytest.raises(ProvisioningError, match="sync-catalog --book devtools"):
        Provisioner(fake, engine).provision(TEAM, NOW)
    assert fake.calls == []


def test_lost_customer_response_is_recovered_by_reading_stripe(
    engine: Engine, fake: FakeStripe
) -> None:
    fake.lose_response_of.add("create_customer")
    with pytest.raises(TransientBillingError):
        Provisioner(fake, engine).provision(TEAM, NOW)
    with Session(engine) as session:
        row = session.get(StripeCustomerRecord, "org_team")
    assert row is not None
    assert row.status == WriteStatus.STARTED
    assert row.started_at == NOW

    outcome = Provisioner(fake, engine).provision(TEAM, NOW)

    assert outcome.customer_action is ProvisionAction.RECOVERED
    assert [w for w in fake.writes() if w[0] == "create_customer"] == [
        ("create_customer", "provision:customer:org_team")
    ]
    assert len(fake.customers) == 1


def test_lost_subscription_response_is_recovered_by_reading_stripe(
    engine: Engine, fake: FakeStripe
) -> None:
    fake.lose_response_of.add("create_subscription")
    with pytest.raises(TransientBillingError):
        Provisioner(fake, engine).provision(TEAM, NOW)

    outcome = Provisioner(fake, engine).provision(TEAM, NOW)

    assert outcome.customer_action is ProvisionAction.EXISTING
    assert outcome.subscription_action is ProvisionAction.RECOVERED
    assert len(fake.subscriptions) == 1
    assert fake.writes("create_subscription") == [
        ("create_subscription", "provision:subscription:org_team")
    ]
    assert set(_items(engine, "org_team")) == {
        "seats",
        "copilot_messages",
        "runner_minutes",
        "iac_resource_hours",
    }


def test_started_write_that_never_reached_stripe_is_made_with_the_same_key(
    engine: Engine, fake: FakeStripe
) -> None:
    """A crash after marking `started` but before the call: Stripe has nothing, so write."""
    with Session(engine) as session:
        session.add(
            StripeCustomerRecord(
                org_id="org_team",
                status=WriteStatus.STARTED.value,
                idempotency_key="provision:customer:org_team",
                started_at=NOW,
                updated_at=NOW,
            )
        )
        session.commit()
    outcome = Provisioner(fake, engine).provision(TEAM, NOW)
    assert outcome.customer_action is ProvisionAction.CREATED
    assert ("find_customers", None) in fake.calls
    assert fake.writes("create_customer") == [("create_customer", "provision:customer:org_team")]

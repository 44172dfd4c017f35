"""Drafts judged on the amounts Stripe will bill at finalization, against an emulator whose
drafts show usage only when they finalize (Stripe's drafts may lag its meters)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from billing.reconciliation.match import Status
from models.stripe_records import StripeCatalogEntry, StripeSubscriptionItemRecord
from stripe_emulator import EmulatorConfig, EmulatorServer
from tests.billing.reconciliation.test_reconciler_emulator import (
    FEB_1,
    GRACE,
    Org,
    World,
    build_world,
)


@pytest.fixture
def stale_world(engine: Engine) -> Iterator[World]:
    with EmulatorServer(EmulatorConfig(draft_follows_usage=False)) as emulator:
        yield build_world(emulator, engine)


def _push_in_grace(world: World, org: Org) -> None:
    """The month's total reaches the meter after Stripe drafted the invoice."""
    org.advance(FEB_1 + timedelta(seconds=10))
    world.gateway.create_meter_event(
        event_name="devtools.copilot_messages",
        stripe_customer_id=org.stripe_customer_id,
        value=org.usage,
        timestamp_at=FEB_1 - timedelta(seconds=1),
        identifier=f"{org.org_id}:copilot_messages:2026-01:r1",
    )


def _copilot(world: World, org: Org) -> tuple[str, str]:
    """The org's copilot subscription item and the Free plan's copilot price."""
    with Session(world.engine) as session:
        item = session.exec(
            select(StripeSubscriptionItemRecord).where(
                StripeSubscriptionItemRecord.org_id == org.org_id,
                StripeSubscriptionItemRecord.component == "copilot_messages",
            )
        ).one()
        free = session.exec(
            select(StripeCatalogEntry).where(
                StripeCatalogEntry.catalog_key == "price:devtools:free:copilot_messages"
            )
        ).one()
    assert free.stripe_price_id is not None
    return item.stripe_subscription_item_id, free.stripe_price_id


def test_a_stale_draft_that_will_finalize_right_is_matched_and_not_held(
    stale_world: World,
) -> None:
    org = stale_world.org("org_stale_ok")
    _push_in_grace(stale_world, org)
    draft = org.invoice("subscription_cycle", FEB_1)
    line = next(
        x
        for x in draft["lines"]["data"]
        if x["quantity"] is not None
        and x["amount"] == 0
        and "copilot" in (x["description"] or "").lower()
    )
    assert line["quantity"] == 0  # the draft still shows no messages
    outcome = org.reconcile(draft, FEB_1, hold=True)
    copilot = next(x for x in outcome.lines if x.component == "copilot_messages")
    # 800 messages on Team: 300 over the 500 included × 2¢, as Stripe will bill at finalization.
    assert (copilot.stripe_quantity, copilot.stripe_amount) == (800, 600)
    assert copilot.status is Status.MATCHED
    assert outcome.status is Status.MATCHED
    assert not outcome.held
    org.advance(FEB_1 + GRACE + timedelta(seconds=10))
    final = org.invoice("subscription_cycle", FEB_1)
    assert (final["status"], final["total"]) == ("paid", 600)


def test_a_stale_draft_with_a_wrong_price_is_held_not_matched(stale_world: World) -> None:
    org = stale_world.org("org_stale_price")
    item_id, free_price = _copilot(stale_world, org)
    # A person moves the copilot item to the Free plan's price in the Dashboard mid-month.
    stale_world.client.v1.subscription_items.update(
        item_id, {"price": free_price, "proration_behavior": "none"}
    )
    _push_in_grace(stale_world, org)
    outcome = org.reconcile(org.invoice("subscription_cycle", FEB_1), FEB_1, hold=True)
    copilot = next(x for x in outcome.lines if x.component == "copilot_messages")
    # The meter holds the ledger's 800, but at the Free price Stripe will bill 750 × 2¢.
    assert (copilot.stripe_quantity, copilot.stripe_amount) == (800, 1500)
    assert (copilot.expected_quantity, copilot.expected_amount) == (800, 600)
    assert copilot.status is Status.MISMATCHED
    assert "1500¢" in copilot.explanation
    assert outcome.status is Status.MISMATCHED
    assert outcome.held
    org.advance(FEB_1 + 3 * GRACE)
    after = org.invoice("subscription_cycle", FEB_1)
    assert (after["status"], after["auto_advance"]) == ("draft", False)

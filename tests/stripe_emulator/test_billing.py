"""Subscriptions, prorations, tiers, billing cycles, mixed intervals, previews and webhooks."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import stripe

from stripe_emulator import EmulatorServer
from tests.stripe_emulator.conftest import DAY, FEB_1_2026, JAN_1_2026, Builders, Receiver


def _lines(client: stripe.StripeClient, invoice_id: str) -> list[Any]:
    return list(client.v1.invoices.line_items.list(invoice_id, {"limit": 100}).data)


def _proration_total(lines: list[Any]) -> int:
    return sum(
        line.amount
        for line in lines
        if line.parent.type == "subscription_item_details"
        and line.parent.subscription_item_details.proration
    )


def _cycle_invoice(client: stripe.StripeClient, customer: str) -> Any:
    invoices = client.v1.invoices.list({"customer": customer}).data
    return next(i for i in invoices if i.billing_reason == "subscription_cycle")


def test_upgrade_halfway_prorates_to_plus_500_on_next_invoice(
    client: stripe.StripeClient, build: Builders
) -> None:
    clock, customer = build.clock_customer()
    sub = client.v1.subscriptions.create(
        {"customer": customer, "items": [{"price": build.seat_price(1000), "quantity": 1}]}
    )
    item = sub.items.data[0]
    assert (item.current_period_start, item.current_period_end) == (JAN_1_2026, FEB_1_2026)
    halfway = JAN_1_2026 + (FEB_1_2026 - JAN_1_2026) // 2
    preview = client.v1.invoices.create_preview(
        {
            "customer": customer,
            "subscription": sub.id,
            "subscription_details": {
                "items": [{"id": item.id, "quantity": 2}],
                "proration_date": halfway,
            },
        }
    )
    assert _proration_total(list(preview.lines.data)) == 500
    assert preview.parent.subscription_details.subscription_proration_date == halfway
    assert (
        client.v1.invoice_items.list({"customer": customer, "pending": True}).data == []
    )  # no side effect
    client.v1.subscription_items.update(
        item.id,
        {"quantity": 2, "proration_behavior": "create_prorations", "proration_date": halfway},
    )
    pending = client.v1.invoice_items.list({"customer": customer, "pending": True}).data
    assert sorted(i.amount for i in pending) == [-500, 1000]
    credit = next(i for i in pending if i.amount < 0)
    assert credit.proration
    assert credit.proration_details.credited_items.invoice == sub.latest_invoice
    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": FEB_1_2026 + 60})
    invoice = _cycle_invoice(client, customer)
    lines = _lines(client, invoice.id)
    assert _proration_total(lines) == 500
    assert invoice.total == 500 + 2000  # prorations + February in advance for 2 seats


def test_always_invoice_finalizes_immediately_and_none_creates_nothing(
    client: stripe.StripeClient, build: Builders
) -> None:
    _, customer = build.clock_customer()
    sub = client.v1.subscriptions.create(
        {"customer": customer, "items": [{"price": build.seat_price(3100), "quantity": 1}]}
    )
    item_id = sub.items.data[0].id
    client.v1.subscriptions.update(
        sub.id, {"items": [{"id": item_id, "quantity": 3}], "proration_behavior": "none"}
    )
    assert client.v1.invoice_items.list({"customer": customer, "pending": True}).data == []
    updated = client.v1.subscriptions.update(
        sub.id,
        {
            "items": [{"id": item_id, "quantity": 4}],
            "proration_behavior": "always_invoice",
            "proration_date": JAN_1_2026 + 30 * DAY,
        },
    )
    invoice = client.v1.invoices.retrieve(updated.latest_invoice)
    assert invoice.billing_reason == "subscription_update"
    assert invoice.status in ("open", "paid")
    # one day of 31 left: −3 seats × 3100 / 31 = −300, +4 seats × 3100 / 31 = +400
    assert sorted(line.amount for line in invoice.lines.data) == [-300, 400]
    assert client.v1.subscription_items.retrieve(item_id).quantity == 4


def test_graduated_tiers_bill_zero_for_400_and_600_cents_for_800(
    client: stripe.StripeClient, build: Builders
) -> None:
    build.meter("copilot_tiers")
    meter = client.v1.billing.meters.list().data
    meter_id = next(m.id for m in meter if m.event_name == "copilot_tiers")
    price = build.metered_price(
        meter_id, [{"up_to": 500, "unit_amount": 0}, {"up_to": "inf", "unit_amount": 2}]
    )
    totals = {}
    for messages in (400, 800):
        clock, customer = build.clock_customer()
        client.v1.subscriptions.create({"customer": customer, "items": [{"price": price}]})
        client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": JAN_1_2026 + 2 * DAY})
        build.usage("copilot_tiers", customer, messages, JAN_1_2026 + DAY)
        client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": FEB_1_2026 + 2 * 3600})
        invoice = _cycle_invoice(client, customer)
        line = next(ln for ln in invoice.lines.data if ln.pricing.price_details.price == price)
        assert line.quantity_decimal == Decimal(messages)
        assert (line.period.start, line.period.end) == (JAN_1_2026, FEB_1_2026)
        totals[messages] = line.amount
    assert totals == {400: 0, 800: 600}


def test_cycle_invoice_is_a_draft_then_finalizes_with_signed_webhooks(
    client: stripe.StripeClient, build: Builders, emulator: EmulatorServer, receiver: Receiver
) -> None:
    endpoint = client.v1.webhook_endpoints.create(
        {"url": receiver.url, "enabled_events": ["invoice.created", "invoice.finalized"]}
    )
    assert endpoint.secret.startswith("whsec_")
    meter_id = build.meter("runner_cycle")
    price = build.metered_price(meter_id, [{"up_to": "inf", "unit_amount_decimal": Decimal("0.8")}])
    clock, customer = build.clock_customer()
    sub = client.v1.subscriptions.create({"customer": customer, "items": [{"price": price}]})
    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": JAN_1_2026 + 2 * DAY})
    build.usage("runner_cycle", customer, 1234, JAN_1_2026 + DAY)
    client.v1.invoice_items.create(
        {"customer": customer, "amount": 250, "description": "Support credit reversal"}
    )
    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": FEB_1_2026 + 600})
    assert client.v1.test_helpers.test_clocks.retrieve(clock).status == "ready"
    draft = _cycle_invoice(client, customer)
    assert draft.status == "draft"
    assert draft.auto_advance is True
    assert draft.parent.subscription_details.subscription == sub.id
    assert draft.automatically_finalizes_at == FEB_1_2026 + 3600
    amounts = sorted(line.amount for line in draft.lines.data)
    assert amounts == [250, 987]  # 1234 × 0.8¢ = 987.2¢ → 987¢ (half up per line)
    # usage reported during the grace period still lands on this invoice
    build.usage("runner_cycle", customer, 100, JAN_1_2026 + 2 * DAY)
    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": FEB_1_2026 + 2 * 3600})
    final = client.v1.invoices.retrieve(draft.id)
    assert final.status in ("open", "paid")
    assert final.number
    metered = next(
        ln for ln in final.lines.data if ln.pricing and ln.pricing.price_details.price == price
    )
    assert (metered.quantity_decimal, metered.amount) == (Decimal(1334), 1067)
    assert final.total == 1067 + 250
    assert emulator.state.wait_for_webhooks(10)
    assert receiver.types_for(draft.id) == ["invoice.created", "invoice.finalized"]
    for body, header in receiver.received:
        event = stripe.Webhook.construct_event(body, header, endpoint.secret)
        assert event.type in ("invoice.created", "invoice.finalized")
    tampered_body, header = receiver.received[0]
    try:
        stripe.Webhook.construct_event(tampered_body + b" ", header, endpoint.secret)
    except stripe.SignatureVerificationError:
        pass
    else:
        raise AssertionError("a tampered body must not verify")
    created = [
        e
        for e in client.v1.events.list({"type": "invoice.created"}).data
        if e.data.object.id == draft.id
    ]
    assert len(created) == 1
    assert json.loads(tampered_body)["api_version"] == "2026-10-28.endive"


def test_auto_advance_false_keeps_the_invoice_a_draft(
    client: stripe.StripeClient, build: Builders
) -> None:
    meter_id = build.meter("paused_cycle")
    price = build.metered_price(meter_id, [{"up_to": "inf", "unit_amount": 1}])
    clock, customer = build.clock_customer()
    client.v1.subscriptions.create({"customer": customer, "items": [{"price": price}]})
    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": FEB_1_2026 + 60})
    draft = _cycle_invoice(client, customer)
    client.v1.invoices.update(draft.id, {"auto_advance": False})
    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": FEB_1_2026 + 5 * 3600})
    assert client.v1.invoices.retrieve(draft.id).status == "draft"
    assert client.v1.invoices.finalize_invoice(draft.id).status in ("open", "paid")


def test_mixed_intervals_keep_separate_periods(
    client: stripe.StripeClient, build: Builders
) -> None:
    meter_id = build.meter("mixed_minutes")
    metered = build.metered_price(
        meter_id, [{"up_to": 1000, "unit_amount": 0}, {"up_to": "inf", "unit_amount": 1}]
    )
    seats = build.seat_price(900, interval="year")
    clock, customer = build.clock_customer()
    sub = client.v1.subscriptions.create(
        {"customer": customer, "items": [{"price": seats, "quantity": 10}, {"price": metered}]}
    )
    first = client.v1.invoices.retrieve(sub.latest_invoice)
    assert first.billing_reason == "subscription_create"
    assert first.total == 9000
    by_price = {i.price.id: i for i in sub.items.data}
    assert by_price[seats].current_period_end == 1_798_761_600  # 2027-01-01
    assert by_price[metered].current_period_end == FEB_1_2026
    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": JAN_1_2026 + 2 * DAY})
    build.usage("mixed_minutes", customer, 1500, JAN_1_2026 + DAY)
    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": FEB_1_2026 + 2 * 3600})
    invoice = _cycle_invoice(client, customer)
    assert [ln.pricing.price_details.price for ln in invoice.lines.data] == [metered]
    assert invoice.total == 500
    after = {i.price.id: i for i in client.v1.subscriptions.retrieve(sub.id).items.data}
    assert (after[seats].current_period_start, after[seats].current_period_end) == (
        JAN_1_2026,
        1_798_761_600,
    )
    assert after[metered].current_period_start == FEB_1_2026
    assert after[metered].current_period_end == 1_772_323_200  # 2026-03-01

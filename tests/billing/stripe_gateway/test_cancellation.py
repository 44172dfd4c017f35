"""Ending subscriptions through the gateway: the wire params of `cancel_subscription` and
`set_cancel_at` (checked against `stripe.params`), the new subscription fields, the subscription
carried by `customer.subscription.*` webhooks, and the same calls against the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import responses
from responses import matchers

from billing.core.errors import PermanentBillingError
from billing.stripe_gateway import StripeConfig, StripeGateway
from billing.stripe_gateway.webhooks import (
    SUBSCRIPTION_DELETED,
    WebhookEventError,
    event_subscription,
    verify_webhook,
)
from stripe_emulator import EmulatorConfig, EmulatorServer
from stripe_emulator.webhooks import sign
from tests.fixtures.stripe import objects as o
from tests.fixtures.stripe_params import RecordedCall, checking_stripe_params

API = "https://api.stripe.com"
SEP_10 = datetime(2026, 9, 10, 12, tzinfo=UTC)
MAR_10_2027 = datetime(2027, 3, 10, 12, tzinfo=UTC)
SEP_10_TS = 1_789_041_600
MAR_10_2027_TS = 1_804_680_000


@pytest.fixture
def gateway() -> StripeGateway:
    return StripeGateway(StripeConfig(api_key="sk_test_123", max_network_retries=0))


@pytest.fixture
def sent() -> Iterator[list[RecordedCall]]:
    responses.start()
    try:
        with checking_stripe_params() as calls:
            yield calls
        unfired = [r.url for r in responses.registered() if r.call_count == 0]
        assert not unfired, f"expected requests never made: {unfired}"
    finally:
        responses.stop()
        responses.reset()


def key(value: str) -> Any:
    return matchers.header_matcher({"Idempotency-Key": value})


def test_the_fixture_instants_are_what_they_say() -> None:
    assert int(SEP_10.timestamp()) == SEP_10_TS
    assert int(MAR_10_2027.timestamp()) == MAR_10_2027_TS


def test_cancel_sends_both_flags_and_the_key_and_reads_the_end(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    canceled = o.subscription(
        [o.subscription_item()],
        status="canceled",
        canceled_at=SEP_10_TS,
        ended_at=SEP_10_TS,
        cancel_at=None,
        cancel_at_period_end=False,
        latest_invoice="in_final",
    )
    responses.delete(
        f"{API}/v1/subscriptions/sub_1",
        json=canceled,
        match=[
            matchers.query_param_matcher({"invoice_now": "true", "prorate": "true"}),
            key("lifecycle:cancel:org_1:7"),
        ],
    )
    sub = gateway.cancel_subscription(
        "sub_1", invoice_now=True, prorate=True, idempotency_key="lifecycle:cancel:org_1:7"
    )
    assert (sub.status, sub.canceled_at, sub.ended_at, sub.cancel_at) == (
        "canceled",
        SEP_10,
        SEP_10,
        None,
    )
    assert sub.stripe_latest_invoice_id == "in_final"
    assert [(c.method, c.params_type, c.params) for c in sent] == [
        ("delete", "SubscriptionCancelParams", {"invoice_now": True, "prorate": True})
    ]


def test_cancel_without_credit_still_sends_prorate_false(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    responses.delete(
        f"{API}/v1/subscriptions/sub_1",
        json=o.subscription([o.subscription_item()], status="canceled", ended_at=SEP_10_TS),
        match=[matchers.query_param_matcher({"invoice_now": "true", "prorate": "false"})],
    )
    sub = gateway.cancel_subscription("sub_1", invoice_now=True, prorate=False, idempotency_key="k")
    assert sub.ended_at == SEP_10


def test_a_retried_cancel_that_meets_a_canceled_subscription_reads_it_back(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    responses.delete(
        f"{API}/v1/subscriptions/sub_1",
        status=400,
        json=o.error("invalid_request_error", "This subscription is already canceled."),
    )
    responses.get(
        f"{API}/v1/subscriptions/sub_1",
        json=o.subscription([o.subscription_item()], status="canceled", ended_at=SEP_10_TS),
    )
    sub = gateway.cancel_subscription("sub_1", invoice_now=True, prorate=True, idempotency_key="k")
    assert (sub.status, sub.ended_at) == ("canceled", SEP_10)


def test_a_refused_cancel_of_a_live_subscription_is_raised(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    responses.delete(
        f"{API}/v1/subscriptions/sub_1",
        status=404,
        json=o.error("invalid_request_error", "No such subscription", "resource_missing", "id"),
    )
    responses.get(f"{API}/v1/subscriptions/sub_1", json=o.subscription([o.subscription_item()]))
    with pytest.raises(PermanentBillingError, match="No such subscription"):
        gateway.cancel_subscription("sub_1", invoice_now=True, prorate=True, idempotency_key="k")


def test_set_cancel_at_schedules_the_term_end_without_prorations(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    responses.post(
        f"{API}/v1/subscriptions/sub_1",
        json=o.subscription(
            [o.subscription_item()], cancel_at=MAR_10_2027_TS, canceled_at=SEP_10_TS
        ),
        match=[
            matchers.urlencoded_params_matcher(
                {"cancel_at": str(MAR_10_2027_TS), "proration_behavior": "none"}
            ),
            key("lifecycle:cancel_at:org_1:3"),
        ],
    )
    sub = gateway.set_cancel_at("sub_1", MAR_10_2027, idempotency_key="lifecycle:cancel_at:org_1:3")
    assert (sub.status, sub.cancel_at, sub.canceled_at, sub.ended_at) == (
        "active",
        MAR_10_2027,
        SEP_10,
        None,
    )
    assert sent[0].params_type == "SubscriptionUpdateParams"


def test_set_cancel_at_none_withdraws_with_an_empty_value(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    responses.post(
        f"{API}/v1/subscriptions/sub_1",
        json=o.subscription([o.subscription_item()], cancel_at=None),
        # urlencoded_params_matcher drops blank values, so the exact body is compared
        match=[matchers.body_matcher("cancel_at=&proration_behavior=none")],
    )
    assert gateway.set_cancel_at("sub_1", None, idempotency_key="k").cancel_at is None


def test_a_naive_cancel_at_is_refused_before_anything_is_sent(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    with pytest.raises(ValueError, match="naive"):
        gateway.set_cancel_at("sub_1", datetime(2027, 3, 10, 12), idempotency_key="k")
    assert sent == []


# ----- webhooks -------------------------------------------------------------------------------


SECRET = "whsec_cancel_test"


def _signed(event: dict[str, Any]) -> Any:
    body = json.dumps(event).encode()
    now = 1_804_680_100
    return verify_webhook(body, sign(body, SECRET, now), SECRET, now=now)


def test_a_deleted_event_carries_the_ended_subscription() -> None:
    obj = o.subscription(
        [o.subscription_item()],
        status="canceled",
        cancel_at=MAR_10_2027_TS,
        canceled_at=SEP_10_TS,
        ended_at=MAR_10_2027_TS,
    )
    event = _signed(
        {
            "id": "evt_1",
            "object": "event",
            "type": SUBSCRIPTION_DELETED,
            "created": MAR_10_2027_TS,
            "livemode": False,
            "data": {"object": obj},
        }
    )
    sub = event_subscription(event)
    assert (sub.stripe_subscription_id, sub.status, sub.ended_at, sub.canceled_at) == (
        "sub_1",
        "canceled",
        MAR_10_2027,
        SEP_10,
    )
    assert sub.items[0].stripe_price_id == "price_seat"


def test_an_invoice_event_carries_no_subscription() -> None:
    event = _signed(
        {
            "id": "evt_2",
            "object": "event",
            "type": "invoice.finalized",
            "created": MAR_10_2027_TS,
            "livemode": False,
            "data": {"object": {"id": "in_1", "object": "invoice"}},
        }
    )
    with pytest.raises(WebhookEventError, match="carries no subscription"):
        event_subscription(event)


# ----- against the emulator -------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig()) as server:
        yield server


def _world(emulator: EmulatorServer) -> tuple[StripeGateway, str, str]:
    """A gateway on the emulator, and a customer on a clock at Sep 10 2026 with a subscription
    of 10 annual $9 seats."""
    gw = StripeGateway(StripeConfig(api_key="sk_test_x", api_base=emulator.url))
    client = gw.client
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": SEP_10_TS})
    customer = client.v1.customers.create({"test_clock": clock.id})
    product = client.v1.products.create({"name": "Seats"})
    price = client.v1.prices.create(
        {
            "currency": "usd",
            "product": product.id,
            "unit_amount": 900,
            "recurring": {"interval": "year"},
        }
    )
    sub = client.v1.subscriptions.create(
        {"customer": customer.id, "items": [{"price": price.id, "quantity": 10}]}
    )
    return gw, sub.id, clock.id


def test_a_cancel_replayed_through_the_gateway_bills_once(emulator: EmulatorServer) -> None:
    gw, sub_id, _ = _world(emulator)
    first = gw.cancel_subscription(sub_id, invoice_now=True, prorate=False, idempotency_key="c1")
    again = gw.cancel_subscription(sub_id, invoice_now=True, prorate=False, idempotency_key="c1")
    other = gw.cancel_subscription(sub_id, invoice_now=True, prorate=False, idempotency_key="c2")
    assert first == again == other
    assert first.status == "canceled"
    assert first.ended_at == SEP_10
    finals = [
        i
        for i in gw.list_invoices(stripe_subscription_id=sub_id)
        if i.billing_reason == "subscription_cycle"
    ]
    assert len(finals) == 1


def test_set_cancel_at_through_the_gateway_ends_at_the_anniversary(
    emulator: EmulatorServer,
) -> None:
    gw, sub_id, clock = _world(emulator)
    scheduled = gw.set_cancel_at(sub_id, datetime(2027, 9, 10, 12, tzinfo=UTC), idempotency_key="s")
    assert scheduled.cancel_at == datetime(2027, 9, 10, 12, tzinfo=UTC)
    withdrawn = gw.set_cancel_at(sub_id, None, idempotency_key="w")
    assert (withdrawn.cancel_at, withdrawn.canceled_at) == (None, None)
    gw.set_cancel_at(sub_id, datetime(2027, 9, 10, 12, tzinfo=UTC), idempotency_key="s2")
    emulator.state.advance_clock(clock, int(datetime(2027, 9, 10, 14, tzinfo=UTC).timestamp()))
    ended = gw.retrieve_subscription(sub_id)
    assert (ended.status, ended.ended_at) == ("canceled", datetime(2027, 9, 10, 12, tzinfo=UTC))
    renewals = [
        line
        for invoice in gw.list_invoices(stripe_subscription_id=sub_id)
        for line in invoice.lines
        if line.period_start_at == datetime(2027, 9, 10, 12, tzinfo=UTC)
    ]
    assert renewals == []

"""Per-subscription caps (https://docs.stripe.com/rate-limits): 200 quantity updates an hour,
10 new invoices a minute and 20 a day, counted on the subscription's own (test) clock; a refused
request is a 429 `rate_limit` that changes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from stripe_emulator import EmulatorConfig, EmulatorServer
from tests.stripe_emulator.conftest import DAY, JAN_1_2026, Builders, make_client


@pytest.fixture(params=["sandbox", "live"])
def emulator(request: pytest.FixtureRequest) -> Iterator[EmulatorServer]:
    # A long burst, so the request-rate limits never refuse this test's own quick requests.
    config = EmulatorConfig(limits=request.param, rate_limit_burst_seconds=100.0)
    with EmulatorServer(config) as server:
        yield server


@pytest.fixture
def client(emulator: EmulatorServer) -> stripe.StripeClient:
    return make_client(emulator.url)


@pytest.fixture
def build(client: stripe.StripeClient) -> Builders:
    return Builders(client)


def _seat_subscription(client: stripe.StripeClient, build: Builders) -> tuple[str, str, str]:
    clock, customer = build.clock_customer()
    price = build.seat_price(1000)
    sub = client.v1.subscriptions.create(
        {"customer": customer, "items": [{"price": price, "quantity": 1}]}
    )
    return clock, sub.id, sub["items"].data[0].id


def _quantity(client: stripe.StripeClient, item_id: str) -> int:
    return int(client.v1.subscription_items.retrieve(item_id).quantity or 0)


def test_the_201st_quantity_update_in_an_hour_is_refused_and_changes_nothing(
    client: stripe.StripeClient, build: Builders
) -> None:
    clock, _, item_id = _seat_subscription(client, build)
    for quantity in range(2, 202):  # 200 updates
        client.v1.subscription_items.update(
            item_id, {"quantity": quantity, "proration_behavior": "none"}
        )
    with pytest.raises(stripe.RateLimitError) as info:
        client.v1.subscription_items.update(item_id, {"quantity": 5, "proration_behavior": "none"})
    assert info.value.http_status == 429
    body = info.value.json_body["error"]  # type: ignore[index]
    assert (body["type"], body["code"]) == ("invalid_request_error", "rate_limit")
    assert _quantity(client, item_id) == 201
    # The same quantity again is no quantity update.
    client.v1.subscription_items.update(item_id, {"quantity": 201, "metadata": {"k": "v"}})
    # An hour later on the subscription's test clock, updates are admitted again.
    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": JAN_1_2026 + 3600})
    client.v1.subscription_items.update(item_id, {"quantity": 5, "proration_behavior": "none"})
    assert _quantity(client, item_id) == 5


def test_new_invoices_are_capped_at_10_a_minute_and_20_a_day(
    client: stripe.StripeClient, build: Builders
) -> None:
    clock, sub_id, item_id = _seat_subscription(client, build)
    quantity = 1

    def invoice_now() -> None:
        nonlocal quantity
        client.v1.subscriptions.update(
            sub_id,
            {
                "items": [{"id": item_id, "quantity": quantity + 1}],
                "proration_behavior": "always_invoice",
            },
        )
        quantity += 1

    def invoice_count() -> int:
        return len(client.v1.invoices.list({"subscription": sub_id, "limit": 100}).data)

    for _ in range(10):
        invoice_now()
    before = invoice_count()
    with pytest.raises(stripe.RateLimitError) as info:
        invoice_now()
    assert info.value.json_body["error"]["code"] == "rate_limit"  # type: ignore[index]
    assert (invoice_count(), _quantity(client, item_id)) == (before, 11)  # nothing changed
    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": JAN_1_2026 + 61})
    for _ in range(10):
        invoice_now()
    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": JAN_1_2026 + 200})
    with pytest.raises(stripe.RateLimitError):
        invoice_now()  # the 21st of the day
    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": JAN_1_2026 + DAY + 60})
    invoice_now()
    assert _quantity(client, item_id) == 22


def test_without_limits_nothing_is_capped() -> None:
    with EmulatorServer(EmulatorConfig(limits="none")) as server:
        client = make_client(server.url)
        _, _, item_id = _seat_subscription(client, Builders(client))
        for quantity in range(2, 203):  # 201 updates
            client.v1.subscription_items.update(
                item_id, {"quantity": quantity, "proration_behavior": "none"}
            )
        assert _quantity(client, item_id) == 202

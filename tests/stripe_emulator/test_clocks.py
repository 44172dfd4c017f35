"""Test clocks keep Stripe's limits: three customers per clock, two intervals per advance."""

from __future__ import annotations

import pytest
import stripe

from stripe_emulator import EmulatorConfig, EmulatorServer
from tests.stripe_emulator.conftest import DAY, FEB_1_2026, JAN_1_2026, Builders, make_client

MAR_1_2026 = 1_772_323_200  # 2026-03-01T00:00:00Z


def test_a_fourth_customer_on_a_clock_is_refused(
    client: stripe.StripeClient, build: Builders
) -> None:
    clock, _ = build.clock_customer()
    for _ in range(2):
        client.v1.customers.create({"test_clock": clock})
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.customers.create({"test_clock": clock})
    assert refused.value.param == "test_clock"
    assert "maximum of 3 customers" in str(refused.value)


def test_an_advance_past_two_intervals_of_the_shortest_subscription_is_refused(
    client: stripe.StripeClient, build: Builders
) -> None:
    clock, customer = build.clock_customer()
    client.v1.subscriptions.create(
        {"customer": customer, "items": [{"price": build.seat_price(1000), "quantity": 1}]}
    )
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": MAR_1_2026 + 1})
    assert refused.value.param == "frozen_time"
    # Exactly two months is allowed, and renews twice on the way.
    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": MAR_1_2026})
    invoices = client.v1.invoices.list({"customer": customer}).data
    assert sorted(i.period_end for i in invoices if i.billing_reason == "subscription_cycle") == [
        FEB_1_2026,
        MAR_1_2026,
    ]


def test_a_clock_without_subscriptions_advances_up_to_two_years(
    client: stripe.StripeClient, build: Builders
) -> None:
    clock, _ = build.clock_customer()
    two_years = JAN_1_2026 + 730 * DAY  # 2026 and 2027 have 365 days each
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": two_years + 1})
    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": two_years})


def test_a_mixed_subscription_is_held_to_two_of_its_shortest_interval(
    client: stripe.StripeClient, build: Builders
) -> None:
    clock, customer = build.clock_customer()
    client.v1.subscriptions.create(
        {
            "customer": customer,
            "items": [
                {"price": build.seat_price(12000, interval="year"), "quantity": 1},
                {"price": build.seat_price(1000, interval="week"), "quantity": 1},
            ],
        }
    )
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": JAN_1_2026 + 15 * DAY})
    assert refused.value.http_status == 400
    assert refused.value.json_body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    client.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": JAN_1_2026 + 14 * DAY})


def test_the_customer_cap_is_configurable() -> None:
    with EmulatorServer(EmulatorConfig(test_clock_max_customers=1)) as emulator:
        client = make_client(emulator.url)
        clock = client.v1.test_helpers.test_clocks.create({"frozen_time": JAN_1_2026}).id
        client.v1.customers.create({"test_clock": clock})
        with pytest.raises(stripe.InvalidRequestError, match="maximum of 1 customers"):
            client.v1.customers.create({"test_clock": clock})
        emulator.state.configure(test_clock_max_customers=None)  # no cap
        for _ in range(5):
            client.v1.customers.create({"test_clock": clock})

"""The budgeted HTTP client: every attempt takes a budget slot; 429s are retried identically."""

from __future__ import annotations

import pytest
import responses

from billing.core.errors import TransientBillingError
from billing.stripe_gateway import StripeConfig, StripeGateway
from billing.stripe_gateway.http import BudgetedRequestsClient

API = "https://api.stripe.com"


class CountingBudget:
    def __init__(self) -> None:
        self.acquired = 0
        self.endpoints: list[str | None] = []

    def acquire(self, endpoint: str | None = None) -> float:
        self.acquired += 1
        self.endpoints.append(endpoint)
        return 0.0


def gateway_with(budget: CountingBudget, retries: int = 6) -> tuple[StripeGateway, list[float]]:
    slept: list[float] = []
    client = BudgetedRequestsClient(
        budget, timeout=5, max_rate_limit_retries=retries, sleep=slept.append
    )
    config = StripeConfig(api_key="sk_test_x", max_network_retries=0)
    return StripeGateway(config, http_client_factory=lambda: client), slept


@responses.activate
def test_429_is_retried_with_the_same_idempotency_key_and_a_budget_slot_each_time() -> None:
    url = f"{API}/v1/subscription_items/si_1"
    limited = {"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "x"}}
    responses.post(url, status=429, json=limited)
    responses.post(url, status=429, json=limited)
    responses.post(
        url,
        json={
            "id": "si_1",
            "object": "subscription_item",
            "quantity": 7,
            "price": {"id": "price_1", "object": "price"},
            "metadata": {},
        },
    )
    budget = CountingBudget()
    gateway, slept = gateway_with(budget)
    item = gateway.update_subscription_item_quantity(
        "si_1", quantity=7, proration_behavior="create_prorations", idempotency_key="seats:o:1"
    )
    assert item.quantity == 7
    keys = {call.request.headers["Idempotency-Key"] for call in responses.calls}
    assert keys == {"seats:o:1"}
    assert len(responses.calls) == 3
    assert budget.acquired == 3
    assert budget.endpoints == ["POST /v1/subscription_items/{id}"] * 3
    assert len(slept) == 2
    assert all(0 <= pause <= 0.5 for pause in slept)


@responses.activate
def test_persistent_429_surfaces_as_a_transient_error() -> None:
    url = f"{API}/v1/subscription_items/si_1"
    limited = {"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "x"}}
    for _ in range(3):
        responses.post(url, status=429, json=limited, headers={"Request-Id": "req_429"})
    gateway, _ = gateway_with(CountingBudget(), retries=2)
    with pytest.raises(TransientBillingError) as caught:
        gateway.update_subscription_item_quantity(
            "si_1", quantity=7, proration_behavior="none", idempotency_key="seats:o:2"
        )
    assert caught.value.http_status == 429
    assert caught.value.request_id == "req_429"
    assert len(responses.calls) == 3

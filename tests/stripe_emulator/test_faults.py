"""Idempotency keys, the rate limiter, injected 500s and the stats endpoint."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest
import stripe

from stripe_emulator import EmulatorConfig, EmulatorServer
from tests.stripe_emulator.conftest import make_client


@pytest.fixture
def fresh() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig()) as server:
        yield server


def _stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/_emulator/stats", timeout=5) as resp:
        return json.loads(resp.read())


def test_same_key_replays_and_different_params_raise_idempotency_error(
    fresh: EmulatorServer,
) -> None:
    client = make_client(fresh.url)
    first = client.v1.customers.create(
        {"email": "a@x.example"}, {"idempotency_key": "cus-create-1"}
    )
    again = client.v1.customers.create(
        {"email": "a@x.example"}, {"idempotency_key": "cus-create-1"}
    )
    assert again.id == first.id
    assert len(client.v1.customers.list().data) == 1
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create({"email": "b@x.example"}, {"idempotency_key": "cus-create-1"})
    assert _stats(fresh.url)["idempotent_replays_total"] == 1


def test_validation_failures_are_not_saved_under_the_key(fresh: EmulatorServer) -> None:
    client = make_client(fresh.url)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.products.create({}, {"idempotency_key": "prod-1"})  # type: ignore[typeddict-item]
    product = client.v1.products.create({"name": "Seats"}, {"idempotency_key": "prod-1"})
    assert product.name == "Seats"


def test_rate_limit_answers_429_and_is_counted(fresh: EmulatorServer) -> None:
    client = make_client(fresh.url)
    fresh.state.configure(rate_limit_rps=1.0)
    errors: list[stripe.RateLimitError] = []
    for _ in range(6):
        try:
            client.v1.customers.list()
        except stripe.RateLimitError as exc:
            errors.append(exc)
    assert all(e.http_status == 429 for e in errors)
    assert all(e.json_body["error"]["code"] == "rate_limit" for e in errors)
    limited = len(errors)
    assert limited >= 3
    stats = _stats(fresh.url)
    assert stats["rate_limited_total"] == limited
    assert stats["responses_by_status"]["429"] == limited
    assert stats["requests_by_route"]["GET /v1/customers"] == 6


@pytest.mark.parametrize("phase", ["before", "after"])
def test_injected_500_is_retried_with_the_same_key_and_creates_one_object(
    fresh: EmulatorServer, phase: str
) -> None:
    request = urllib.request.Request(
        f"{fresh.url}/_emulator/config",
        method="POST",
        data=json.dumps(
            {"fail_next": 1, "fault_phase": phase, "fault_path_prefix": "/v1/customers"}
        ).encode(),
    )
    urllib.request.urlopen(request, timeout=5).close()
    client = make_client(fresh.url, retries=1)
    customer = client.v1.customers.create(
        {"email": "retry@x.example"}, {"idempotency_key": "retry-1"}
    )
    customers = make_client(fresh.url).v1.customers.list().data
    assert [c.id for c in customers] == [customer.id]
    stats = _stats(fresh.url)
    assert stats["injected_errors_total"] == 1
    assert stats["responses_by_status"]["500"] == 1


def test_injected_500_without_retries_surfaces_as_api_error(fresh: EmulatorServer) -> None:
    fresh.state.configure(fail_next=1)
    with pytest.raises(stripe.APIError):
        make_client(fresh.url).v1.customers.list()


def test_injected_timeout_drops_the_connection(fresh: EmulatorServer) -> None:
    fresh.state.configure(timeout_next=1, timeout_hold_ms=50)
    with pytest.raises(stripe.APIConnectionError):
        make_client(fresh.url).v1.customers.list()
    assert _stats(fresh.url)["injected_timeouts_total"] == 1
    assert make_client(fresh.url).v1.customers.list().data == []


def test_reset_clears_objects(fresh: EmulatorServer) -> None:
    client = make_client(fresh.url)
    client.v1.customers.create({"email": "gone@x.example"})
    fresh.state.reset()
    assert client.v1.customers.list().data == []
    assert _stats(fresh.url)["requests_total"] == 1

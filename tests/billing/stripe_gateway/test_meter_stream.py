"""The gateway's meter event stream: sessions, token reuse and refresh, batches, the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import responses
import stripe

from billing.core.errors import MeterStreamUnavailable
from billing.stripe_gateway import MeterEventInput, StripeConfig, StripeGateway
from billing.stripe_gateway.http import BudgetedRequestsClient
from stripe_emulator import EmulatorConfig, EmulatorServer
from tests.billing.stripe_gateway.test_http import CountingBudget
from tests.fixtures.stripe_params import RecordedCall, checking_stripe_params

API = "https://api.stripe.com"
EVENTS = "https://meter-events.stripe.com"
SESSION_URL = f"{API}/v2/billing/meter_event_session"
STREAM_URL = f"{EVENTS}/v2/billing/meter_event_stream"
JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)


def session_body(token: str, lifetime: timedelta = timedelta(minutes=15)) -> dict[str, object]:
    return {
        "id": f"mes_{token}",
        "object": "v2.billing.meter_event_session",
        "authentication_token": token,
        "created": "2026-01-01T00:00:00.000Z",
        "expires_at": (JAN_1 + lifetime).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "livemode": False,
    }


def event(n: int, value: int | Decimal = 5) -> MeterEventInput:
    return MeterEventInput(
        event_name="messages",
        stripe_customer_id="cus_1",
        value=value,
        timestamp_at=JAN_1 - timedelta(seconds=1),
        identifier=f"usage:o:messages:{n}",
    )


@pytest.fixture
def gateway() -> StripeGateway:
    return StripeGateway(
        StripeConfig(api_key="sk_test_123", meter_events_base=EVENTS, max_network_retries=0)
    )


@pytest.fixture
def sent() -> Iterator[list[RecordedCall]]:
    responses.start()
    try:
        responses.post(SESSION_URL, json=session_body("tok_1"))
        with checking_stripe_params() as calls:
            yield calls
    finally:
        responses.stop()
        responses.reset()


def _streamed(calls: list[RecordedCall]) -> list[RecordedCall]:
    return [c for c in calls if c.path.endswith("meter_event_stream")]


def test_events_go_as_json_with_the_session_token_and_a_deterministic_key(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    responses.post(STREAM_URL, json={})
    gateway.send_meter_events([event(1, Decimal("12.50")), event(2)])
    session_call, stream_call = responses.calls
    assert session_call.request.headers["Authorization"] == "Bearer sk_test_123"
    assert stream_call.request.headers["Authorization"] == "Bearer tok_1"
    assert stream_call.request.headers["Content-Type"] == "application/json"
    assert json.loads(stream_call.request.body or "") == {
        "events": [
            {
                "event_name": "messages",
                "identifier": "usage:o:messages:1",
                "payload": {"stripe_customer_id": "cus_1", "value": "12.5"},
                "timestamp": "2025-12-31T23:59:59Z",
            },
            {
                "event_name": "messages",
                "identifier": "usage:o:messages:2",
                "payload": {"stripe_customer_id": "cus_1", "value": "5"},
                "timestamp": "2025-12-31T23:59:59Z",
            },
        ]
    }
    first_key = stream_call.request.headers["Idempotency-Key"]
    assert first_key.startswith("meter-stream:")
    gateway.send_meter_events([event(1, Decimal("12.50")), event(2)])  # a retried push
    assert responses.calls[-1].request.headers["Idempotency-Key"] == first_key
    assert len(_streamed(sent)) == 2
    assert [c.params_type for c in sent].count("v2.billing.MeterEventSessionCreateParams") == 1


def test_250_events_go_in_three_requests_of_at_most_100_on_one_session(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    responses.post(STREAM_URL, json={})
    gateway.send_meter_events([event(n) for n in range(250)])
    sizes = [len(c.params["events"]) for c in _streamed(sent)]
    assert sizes == [100, 100, 50]
    assert gateway.meter_event_sessions_created == 1


def test_an_expired_session_is_replaced_once_and_the_batch_resent(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    expired = {
        "error": {
            "type": "temporary_session_expired",
            "code": "billing_meter_event_session_expired",
            "message": "expired",
        }
    }
    responses.post(SESSION_URL, json=session_body("tok_2"))
    responses.post(STREAM_URL, status=401, json=expired)
    responses.post(STREAM_URL, json={})
    gateway.send_meter_events([event(1)])
    tokens = [c.request.headers["Authorization"] for c in responses.calls]
    assert tokens == ["Bearer sk_test_123", "Bearer tok_1", "Bearer sk_test_123", "Bearer tok_2"]
    keys = {c.request.headers["Idempotency-Key"] for c in responses.calls[1::2]}
    assert len(keys) == 1  # the same request, under the new token


def test_a_token_within_60_seconds_of_expiry_is_refreshed_before_use(
    gateway: StripeGateway,
) -> None:
    with responses.RequestsMock() as mock:
        # a session that lives 50 s is due for refresh at once: one session per send
        mock.post(SESSION_URL, json=session_body("tok_short", timedelta(seconds=50)))
        mock.post(STREAM_URL, json={})
        gateway.send_meter_events([event(1)])
        gateway.send_meter_events([event(2)])
    assert gateway.meter_event_sessions_created == 2


def test_an_account_without_the_stream_raises_unavailable_and_is_remembered(
    gateway: StripeGateway,
) -> None:
    with responses.RequestsMock() as mock:
        mock.post(
            SESSION_URL,
            status=404,
            json={"error": {"type": "invalid_request_error", "message": "Unrecognized request"}},
        )
        with pytest.raises(MeterStreamUnavailable) as info:
            gateway.send_meter_events([event(1)])
        assert info.value.http_status == 404
        with pytest.raises(MeterStreamUnavailable):
            gateway.send_meter_events([event(2)])
        assert len(mock.calls) == 1


def test_stream_requests_take_their_own_endpoint_budget() -> None:
    budget = CountingBudget()
    client = BudgetedRequestsClient(budget, timeout=5)
    config = StripeConfig(api_key="sk_test_x", meter_events_base=EVENTS, max_network_retries=0)
    gateway = StripeGateway(config, http_client_factory=lambda: client)
    with responses.RequestsMock() as mock:
        mock.post(SESSION_URL, json=session_body("tok_b"))
        mock.post(STREAM_URL, json={})
        gateway.send_meter_events([event(1)])
    assert budget.endpoints == [
        "POST /v2/billing/meter_event_session",
        "POST /v2/billing/meter_event_stream",
    ]


def test_streamed_events_reach_the_emulators_meter() -> None:
    with EmulatorServer(EmulatorConfig()) as emulator:
        client = stripe.StripeClient(
            "sk_test_e", base_addresses={"api": emulator.url}, max_network_retries=0
        )
        client.v1.billing.meters.create(
            {
                "display_name": "m",
                "event_name": "messages",
                "default_aggregation": {"formula": "sum"},
            }
        )
        customer = client.v1.customers.create({}).id
        gateway = StripeGateway(
            StripeConfig(api_key="sk_test_e", api_base=emulator.url, max_network_retries=0)
        )
        now = datetime.now(UTC) - timedelta(minutes=1)
        events = [MeterEventInput("messages", customer, 2, now, f"e:{n}") for n in range(150)]
        gateway.send_meter_events(events)
        gateway.send_meter_events(events[:10])  # repeats are dropped by identifier
        total = emulator.state.meter_total(customer, "messages", 0, 2**40)
        stats = emulator.state.stats()
    assert total == Decimal(300)
    assert stats["meter_event_stream_requests"] == 3
    assert stats["meter_event_stream_duplicates"] == 10
    assert stats["meter_event_sessions_created"] == 1


def test_threads_sending_at_once_share_one_session(gateway: StripeGateway) -> None:
    with responses.RequestsMock() as mock:
        mock.post(SESSION_URL, json=session_body("tok_shared"))
        mock.post(STREAM_URL, json={})
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda n: gateway.send_meter_events([event(n)]), range(32)))
        sessions = [c for c in mock.calls if c.request.url == SESSION_URL]
        streamed = [c for c in mock.calls if c.request.url == STREAM_URL]
    assert len(sessions) == 1
    assert len(streamed) == 32
    assert {c.request.headers["Authorization"] for c in streamed} == {"Bearer tok_shared"}

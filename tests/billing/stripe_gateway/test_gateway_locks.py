"""The gateway sends a write only while the per-org lock of the thread's block is still its own:
a holder that lost its org's lock stops before the request leaves (no HTTP call is made)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
import responses

from billing.core.locks import LockLostError, org_lock
from billing.stripe_gateway import StripeConfig, StripeGateway
from tests.conftest import REDIS_TEST_URL

API = "https://api.stripe.com"
ORG_ID = "org_1"


@pytest.fixture
def gateway() -> StripeGateway:
    return StripeGateway(StripeConfig(api_key="sk_test_123", max_network_retries=0))


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_TEST_URL)
    yield client
    client.close()


@pytest.fixture
def stripe_http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(
            f"{API}/v1/billing/meter_events",
            json={
                "object": "billing.meter_event",
                "event_name": "devtools.copilot_messages",
                "identifier": "usage:org_1:copilot_messages:r1",
                "payload": {"stripe_customer_id": "cus_1", "value": "7"},
                "timestamp": 1768435200,
                "created": 1768435200,
                "livemode": False,
            },
        )
        yield mock


def _push(gateway: StripeGateway) -> None:
    gateway.create_meter_event(
        event_name="devtools.copilot_messages",
        stripe_customer_id="cus_1",
        value=7,
        timestamp_at=datetime(2026, 1, 15, tzinfo=UTC),
        identifier="usage:org_1:copilot_messages:r1",
    )


def test_a_write_under_a_held_lock_is_sent(
    gateway: StripeGateway, client: redis.Redis, stripe_http: responses.RequestsMock
) -> None:
    with org_lock(client, f"usage-{uuid.uuid4().hex[:10]}", ORG_ID, timeout_seconds=1):
        _push(gateway)
    assert len(stripe_http.calls) == 1


def test_a_write_after_the_lock_was_taken_is_never_sent(
    gateway: StripeGateway, client: redis.Redis, stripe_http: responses.RequestsMock
) -> None:
    scope = f"usage-{uuid.uuid4().hex[:10]}"
    key = f"billing:lock:{scope}:{ORG_ID}"
    other = client.lock(key, timeout=10, thread_local=False)
    with org_lock(client, scope, ORG_ID, timeout_seconds=1):
        _push(gateway)
        client.delete(key)
        assert other.acquire(blocking=False)  # another worker now pushes this org
        with pytest.raises(LockLostError, match=f"{scope} lock for org 'org_1' was lost"):
            _push(gateway)
    assert len(stripe_http.calls) == 1, "a write was sent after the org's lock was lost"
    other.release()

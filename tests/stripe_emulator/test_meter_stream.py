"""The v2 meter event stream, driven by stripe-python 16's own client against the emulator."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests
import stripe

from stripe_emulator import EmulatorConfig, EmulatorServer
from tests.stripe_emulator.conftest import JAN_1_2026, Builders, make_client

JAN_1_ISO = "2026-01-01T00:00:00Z"


def _event(name: str, customer: str, value: str, identifier: str, **extra: Any) -> Any:
    return {
        "event_name": name,
        "identifier": identifier,
        "payload": {"stripe_customer_id": customer, "value": value},
        "timestamp": JAN_1_ISO,
        **extra,
    }


def _stream(client: stripe.StripeClient, events: list[Any]) -> None:
    session = client.v2.billing.meter_event_session.create()
    client.v2.billing.meter_event_stream.create(
        {"events": events}, {"api_key": session.authentication_token}
    )


def _stats(emulator: EmulatorServer) -> dict[str, Any]:
    body: dict[str, Any] = requests.get(f"{emulator.url}/_emulator/stats", timeout=5).json()
    return body


def test_a_session_token_lasts_15_minutes(client: stripe.StripeClient) -> None:
    session = client.v2.billing.meter_event_session.create()
    assert session.object == "v2.billing.meter_event_session"
    assert session.livemode is False
    created = datetime.fromisoformat(session.created)
    expires = datetime.fromisoformat(session.expires_at)
    assert (expires - created).total_seconds() == 15 * 60
    assert session.authentication_token


def test_streamed_events_are_counted_like_v1_events_and_repeats_are_dropped(
    client: stripe.StripeClient, build: Builders, emulator: EmulatorServer
) -> None:
    build.meter("stream_messages")
    _, customer = build.clock_customer()
    before = _stats(emulator)
    _stream(
        client,
        [
            _event("stream_messages", customer, "40", "s:1"),
            _event("stream_messages", customer, "2", "s:2"),
        ],
    )
    # a retried request: the same identifiers again, plus one new event
    _stream(
        client,
        [
            _event("stream_messages", customer, "40", "s:1"),
            _event("stream_messages", customer, "2", "s:2"),
            _event("stream_messages", customer, "5", "s:3"),
        ],
    )
    total = emulator.state.meter_total(customer, "stream_messages", 0, JAN_1_2026 + 1)
    assert total == Decimal(47)
    after = _stats(emulator)
    assert after["meter_event_stream_requests"] - before["meter_event_stream_requests"] == 2
    assert after["meter_event_stream_events"] - before["meter_event_stream_events"] == 5
    assert after["meter_event_stream_duplicates"] - before["meter_event_stream_duplicates"] == 2
    # the v1 endpoint sees the same identifiers: the stream recorded through the same store
    with pytest.raises(stripe.InvalidRequestError):
        build.usage("stream_messages", customer, 40, JAN_1_2026, identifier="s:1")


def test_invalid_events_are_accepted_then_dropped_and_reported(
    client: stripe.StripeClient, build: Builders, emulator: EmulatorServer
) -> None:
    build.meter("stream_minutes")
    _, customer = build.clock_customer()
    _stream(
        client,
        [
            _event("stream_minutes", "cus_missing", "3", "bad:customer"),
            _event("no_such_stream_meter", customer, "3", "bad:name"),
            _event("stream_minutes", customer, "three", "bad:value"),
            _event("stream_minutes", customer, "3", "bad:time", timestamp="yesterday"),
            _event("stream_minutes", customer, "7", "good"),
        ],
    )
    assert emulator.state.meter_total(customer, "stream_minutes", 0, JAN_1_2026 + 1) == 7
    reports = {e["identifier"]: e["code"] for e in _stats(emulator)["meter_event_stream_errors"]}
    assert reports["bad:customer"] == "meter_event_customer_not_found"
    assert reports["bad:name"] == "no_meter"
    assert reports["bad:value"] == "meter_event_invalid_value"
    assert reports["bad:time"] == "timestamp_invalid"
    assert "good" not in reports


def test_more_than_100_events_are_refused(client: stripe.StripeClient, build: Builders) -> None:
    build.meter("stream_many")
    _, customer = build.clock_customer()
    events = [_event("stream_many", customer, "1", f"many:{i}") for i in range(101)]
    with pytest.raises(stripe.InvalidRequestError) as info:
        _stream(client, events)
    assert info.value.http_status == 400
    _stream(client, events[:100])  # exactly 100 is fine


def test_an_unknown_token_is_a_temporary_session_expired_error(
    client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.TemporarySessionExpiredError) as info:
        client.v2.billing.meter_event_stream.create(
            {"events": [_event("x", "cus_x", "1", "x")]}, {"api_key": "mes_tok_unknown"}
        )
    assert info.value.http_status == 401


def test_a_token_expires_after_15_minutes_of_the_account_clock() -> None:
    with EmulatorServer(EmulatorConfig(frozen_time=JAN_1_2026)) as emulator:
        client = make_client(emulator.url)
        build = Builders(client)
        build.meter("expiring")
        customer = client.v1.customers.create({}).id
        session = client.v2.billing.meter_event_session.create()
        options: stripe.RequestOptions = {"api_key": session.authentication_token}
        event = _event("expiring", customer, "1", "e:1", timestamp=JAN_1_ISO)
        client.v2.billing.meter_event_stream.create({"events": [event]}, options)
        emulator.state.configure(frozen_time=JAN_1_2026 + 15 * 60)
        with pytest.raises(stripe.TemporarySessionExpiredError):
            client.v2.billing.meter_event_stream.create({"events": [event]}, options)
        assert datetime.fromisoformat(session.expires_at) == datetime.fromtimestamp(
            JAN_1_2026 + 15 * 60, UTC
        )


def test_the_stream_has_its_own_limit_outside_the_global_one_in_live_mode() -> None:
    # a global budget of one request per 1,000 s: the first request empties it
    with EmulatorServer(EmulatorConfig(limits="live", rate_limit_rps=0.001)) as emulator:
        client = make_client(emulator.url)
        client.v2.billing.meter_event_session.create()
        with pytest.raises(stripe.RateLimitError):
            client.v2.billing.meter_event_session.create()
        token = "mes_tok_granted"
        emulator.state.store.meter_event_sessions[token] = emulator.state.store.wall_now() + 60
        client.v2.billing.meter_event_stream.create(
            {"events": [_event("live_stream", "cus_x", "1", "l:1")]}, {"api_key": token}
        )
        stats = _stats(emulator)
        assert stats["rate_limited_by_reason"] == {"global-rate": 1}
        assert stats["meter_event_stream_requests"] == 1

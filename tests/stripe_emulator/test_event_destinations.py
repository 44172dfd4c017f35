"""Thin event destinations: the meter event stream's asynchronous error reports, signed and
delivered, then fetched with stripe-python 16's own parser and `GET /v2/core/events/{id}`."""

from __future__ import annotations

import json
from typing import Any

import pytest
import stripe
from stripe.events import V1BillingMeterErrorReportTriggeredEventNotification

from stripe_emulator import EmulatorServer
from tests.stripe_emulator.conftest import Builders, Receiver

ERROR_REPORT = "v1.billing.meter.error_report_triggered"
NO_METER = "v1.billing.meter.no_meter_found"


def _destination(client: stripe.StripeClient, url: str, events: list[str]) -> Any:
    return client.v2.core.event_destinations.create(
        {
            "name": "meter errors",
            "type": "webhook_endpoint",
            "event_payload": "thin",
            "enabled_events": events,
            "webhook_endpoint": {"url": url},
            "include": ["webhook_endpoint.signing_secret"],
        }
    )


def _stream(client: stripe.StripeClient, events: list[dict[str, Any]]) -> None:
    session = client.v2.billing.meter_event_session.create()
    client.v2.billing.meter_event_stream.create(
        {"events": events},  # type: ignore[typeddict-item]
        {"api_key": session.authentication_token},
    )


def _event(name: str, customer: str, identifier: str) -> dict[str, Any]:
    return {
        "event_name": name,
        "identifier": identifier,
        "payload": {"stripe_customer_id": customer, "value": "3"},
    }


def test_an_unknown_customer_is_reported_by_a_signed_thin_event(
    client: stripe.StripeClient, build: Builders, emulator: EmulatorServer, receiver: Receiver
) -> None:
    meter_id = build.meter("thin_messages")
    destination = _destination(client, receiver.url, [ERROR_REPORT])
    assert destination.object == "v2.core.event_destination"
    secret = destination.webhook_endpoint.signing_secret
    assert secret.startswith("whsec_")
    # the secret is given at creation only
    again = client.v2.core.event_destinations.retrieve(destination.id)
    assert again.webhook_endpoint.signing_secret is None

    _stream(
        client,
        [
            _event("thin_messages", "cus_nobody", "bad:1"),
            _event("thin_messages", "cus_nobody", "bad:2"),
        ],
    )
    assert emulator.state.wait_for_webhooks(10)
    assert len(receiver.received) == 1
    body, header = receiver.received[0]
    notification = client.parse_event_notification(body, header, secret)
    assert isinstance(notification, V1BillingMeterErrorReportTriggeredEventNotification)
    assert notification.related_object.id == meter_id
    assert "data" not in json.loads(body)  # thin: the details are fetched

    event = notification.fetch_event()
    assert event.id == notification.id
    assert event.related_object.url == f"/v1/billing/meters/{meter_id}"
    assert event.data.reason.error_count == 2
    [error_type] = event.data.reason.error_types
    assert error_type.code == "meter_event_customer_not_found"
    assert error_type.error_count == 2
    identifiers = [s.request.identifier for s in error_type.sample_errors]
    assert identifiers == ["bad:1", "bad:2"]
    assert "cus_nobody" in error_type.sample_errors[0].error_message
    assert event.data.developer_message_summary == "There are 2 invalid events"
    assert event.data.validation_start < event.data.validation_end
    retrieved = client.v2.core.events.retrieve(notification.id)
    assert retrieved.id == notification.id

    with pytest.raises(stripe.SignatureVerificationError):
        client.parse_event_notification(body, header, "whsec_wrong")


def test_an_event_name_without_a_meter_is_no_meter_found_and_valid_events_report_nothing(
    client: stripe.StripeClient, build: Builders, emulator: EmulatorServer, receiver: Receiver
) -> None:
    build.meter("thin_ok")
    _, customer = build.clock_customer()
    destination = _destination(client, receiver.url, [NO_METER])
    secret = destination.webhook_endpoint.signing_secret
    _stream(client, [_event("thin_ok", customer, "ok:1")])
    _stream(client, [_event("no_such_meter", customer, "nm:1")])
    assert emulator.state.wait_for_webhooks(10)
    types = [json.loads(body)["type"] for body, _ in receiver.received]
    assert types == [NO_METER]
    body, header = receiver.received[0]
    event = client.parse_event_notification(body, header, secret).fetch_event()
    [error_type] = event.data.reason.error_types  # type: ignore[attr-defined]
    assert error_type.code == "no_meter"
    assert error_type.sample_errors[0].request.identifier == "nm:1"


def test_an_unknown_event_is_a_404(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        client.v2.core.events.retrieve("evt_test_missing")

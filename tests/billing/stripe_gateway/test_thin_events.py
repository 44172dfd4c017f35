"""A fetched meter error report read as a record, and refused naming the field that is wrong."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from billing.stripe_gateway.thin_events import meter_error_event
from billing.stripe_gateway.webhooks import WebhookEventError

# The example of https://docs.stripe.com/api/v2/core/events/object
EVENT: dict[str, Any] = {
    "id": "evt_test_65RCjj4EqW1sabcjs2Z16RCMoNQdSQkOWvfL6L5uU2K40u",
    "object": "v2.core.event",
    "context": None,
    "created": "2024-09-26T17:46:22.134Z",
    "data": {
        "developer_message_summary": "There is 1 invalid event",
        "reason": {
            "error_count": 1,
            "error_types": [
                {
                    "code": "meter_event_no_customer_defined",
                    "error_count": 1,
                    "sample_errors": [
                        {
                            "error_message": "Customer mapping key stripe_customer_id not found.",
                            "request": {"identifier": "cb447754-6880-45c2-8f2f-ef19b6ce81e9"},
                        }
                    ],
                }
            ],
        },
        "validation_end": "2024-09-26T17:46:20.000Z",
        "validation_start": "2024-09-26T17:46:10.000Z",
    },
    "livemode": False,
    "reason": None,
    "related_object": {
        "id": "mtr_test_61RCjiqdTDC91zgip41IqPCzPnxqqSVc",
        "type": "billing.meter",
        "url": "/v1/billing/meters/mtr_test_61RCjiqdTDC91zgip41IqPCzPnxqqSVc",
    },
    "type": "v1.billing.meter.error_report_triggered",
}


def test_the_documented_example_is_read() -> None:
    report = meter_error_event(EVENT)
    assert report.stripe_meter_id == "mtr_test_61RCjiqdTDC91zgip41IqPCzPnxqqSVc"
    assert report.error_count == 1
    assert report.validation_start_at == datetime(2024, 9, 26, 17, 46, 10, tzinfo=UTC)
    [sample] = report.samples
    assert sample.code == "meter_event_no_customer_defined"
    assert sample.identifier == "cb447754-6880-45c2-8f2f-ef19b6ce81e9"


def test_an_error_type_without_samples_is_kept() -> None:
    event = copy.deepcopy(EVENT)
    event["data"]["reason"]["error_types"][0]["sample_errors"] = []
    [sample] = meter_error_event(event).samples
    assert (sample.code, sample.identifier, sample.error_message) == (
        "meter_event_no_customer_defined",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (("type",), "invoice.created", "is no meter error report"),
        (("data",), [], "data must be an object"),
        (("data", "reason", "error_count"), "1", "reason.error_count must be a count"),
        (("data", "reason", "error_types"), {}, "error_types must be a list"),
        (("data", "validation_start"), "yesterday", "validation_start must be an ISO 8601"),
        (("data", "validation_end"), "2024-09-26T17:46:20", "validation_end has no UTC offset"),
    ],
)
def test_a_malformed_report_is_refused_naming_the_field(
    path: tuple[str, ...], value: object, named: str
) -> None:
    event = copy.deepcopy(EVENT)
    node = event
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(WebhookEventError, match=named) as caught:
        meter_error_event(event)
    assert EVENT["id"] in str(caught.value)


def test_an_error_type_without_a_code_is_refused() -> None:
    event = copy.deepcopy(EVENT)
    del event["data"]["reason"]["error_types"][0]["code"]
    with pytest.raises(WebhookEventError, match=r"error_types\[0\]\.code"):
        meter_error_event(event)


def test_text_a_database_cannot_hold_is_cleaned_not_refused() -> None:
    """A NUL or a lone surrogate in Stripe's message is dropped or replaced: refusing the
    report would only make Stripe deliver it again, forever."""
    event = copy.deepcopy(EVENT)
    sample = event["data"]["reason"]["error_types"][0]["sample_errors"][0]
    sample["error_message"] = "bad\x00 value \ud800"
    [read] = meter_error_event(event).samples
    assert read.error_message == "bad value ?"

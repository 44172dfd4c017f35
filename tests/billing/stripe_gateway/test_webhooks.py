"""Webhook verification: signatures dated too far either way, the key's mode, the event's shape."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from billing.stripe_gateway.webhooks import (
    WebhookEventError,
    WebhookSignatureError,
    verify_webhook,
)
from stripe_emulator.webhooks import sign

SECRET = "whsec_gateway_test"
NOW = 1_769_904_000  # 2026-02-01T00:00:00Z, Unix seconds


def event(**fields: Any) -> dict[str, Any]:
    return {
        "id": "evt_1",
        "object": "event",
        "type": "invoice.finalized",
        "created": NOW - 5,
        "livemode": False,
        "data": {"object": {"id": "in_1", "object": "invoice"}},
        **fields,
    }


def verify(body: bytes, *, signed_at: int = NOW, livemode: bool = False) -> Any:
    return verify_webhook(body, sign(body, SECRET, signed_at), SECRET, livemode=livemode, now=NOW)


def test_a_signed_event_becomes_a_record() -> None:
    body = json.dumps(event()).encode()
    record = verify(body)
    assert (record.stripe_event_id, record.type, record.stripe_object_id) == (
        "evt_1",
        "invoice.finalized",
        "in_1",
    )
    assert record.created_at == datetime(2026, 1, 31, 23, 59, 55, tzinfo=UTC)
    assert record.payload_json == body.decode()


@pytest.mark.parametrize(
    ("offset", "problem"),
    [
        (301, "is 301 s in the future (tolerance 300 s)"),
        (86_400 * 365, "in the future"),
        (-301, "is 301 s old (tolerance 300 s)"),
    ],
)
def test_a_signature_dated_over_five_minutes_away_is_refused(offset: int, problem: str) -> None:
    body = json.dumps(event()).encode()
    with pytest.raises(WebhookSignatureError, match=re.escape(problem)):
        verify(body, signed_at=NOW + offset)


@pytest.mark.parametrize("offset", [300, -300, 0])
def test_clock_skew_within_five_minutes_is_accepted(offset: int) -> None:
    assert verify(json.dumps(event()).encode(), signed_at=NOW + offset).stripe_event_id == "evt_1"


@pytest.mark.parametrize(
    ("event_livemode", "key_livemode", "problem"),
    [
        (True, False, "evt_1: a live-mode event, but the Stripe key is a test key"),
        (False, True, "evt_1: a test-mode event, but the Stripe key is a live key"),
        (None, False, "evt_1: livemode must be true or false"),
        ("false", False, "evt_1: livemode must be true or false"),
    ],
)
def test_an_event_of_the_other_mode_is_refused(
    event_livemode: object, key_livemode: bool, problem: str
) -> None:
    body = json.dumps(event(livemode=event_livemode)).encode()
    with pytest.raises(WebhookEventError, match=re.escape(problem)):
        verify(body, livemode=key_livemode)


def test_a_live_event_is_taken_with_a_live_key() -> None:
    record = verify(json.dumps(event(livemode=True)).encode(), livemode=True)
    assert record.livemode is True


NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"[]", "the body is a JSON array, not an event object"),
        (json.dumps([event()]).encode(), "the body is a JSON array, not an event object"),
        (b'"evt_1"', "the body is a JSON string, not an event object"),
        (b"{", "the body is not JSON"),
        (NESTED, "the body is JSON nested too deeply to be an event"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nested too deeply"),
        (json.dumps({k: v for k, v in event().items() if k != "id"}).encode(), "has no id"),
        (json.dumps(event(id=7)).encode(), "the event's id must be a non-empty string"),
        (json.dumps(event(id=" ")).encode(), "the event's id must be a non-empty string"),
        (json.dumps(event(id="e" * 256)).encode(), "id is longer than 255 characters"),
        (json.dumps(event(id="evt_\ud800")).encode(), "id holds characters that are not text"),
        (json.dumps(event(id="evt_\u0000")).encode(), "id holds characters that are not text"),
        (json.dumps(event(type=None)).encode(), "the event has no type"),
        (json.dumps(event(created=10**30)).encode(), "created must be a Unix timestamp"),
        (json.dumps(event(created="soon")).encode(), "created must be a Unix timestamp"),
        (json.dumps(event(data={"object": {"id": 5}})).encode(), "data.object.id must be a"),
        (json.dumps(event(object="v2.core.event")).encode(), "thin"),
    ],
)
def test_a_signed_body_that_is_not_an_event_is_refused_by_name(body: bytes, problem: str) -> None:
    with pytest.raises(WebhookEventError, match=re.escape(problem)):
        verify(body)


def test_a_non_utf8_body_is_a_signature_failure() -> None:
    with pytest.raises(WebhookSignatureError, match="not UTF-8"):
        verify(b'{"id": "caf\xe9"}')

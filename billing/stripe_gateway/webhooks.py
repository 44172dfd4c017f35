"""Stripe webhook verification: the raw body's signature checked, the event as a frozen record."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe

from billing.core.errors import PermanentBillingError
from billing.stripe_gateway import convert
from billing.stripe_gateway.records import StripeSubscription

# Stripe's default: a signature older than five minutes is refused (replay protection). One
# dated more than this ahead of our clock is refused too: stripe-python checks only the past.
WEBHOOK_TOLERANCE_SECONDS = 300
# Column sizes of the inbox (models/reconciliation.py): longer values are not Stripe's.
MAX_EVENT_ID_LENGTH = 255
MAX_EVENT_TYPE_LENGTH = 100
_MAX_UNIX = 253_402_300_799  # 9999-12-31T23:59:59Z, the last instant a datetime holds
# A scheduled end set or withdrawn, and the end itself ("Occurs whenever a customer's
# subscription ends"): the lifecycle reads the subscription they carry (`event_subscription`).
SUBSCRIPTION_UPDATED = "customer.subscription.updated"
SUBSCRIPTION_DELETED = "customer.subscription.deleted"


class WebhookSignatureError(PermanentBillingError):
    """The webhook's signature is missing, wrong, or its timestamp is outside the tolerance."""


class WebhookEventError(PermanentBillingError):
    """A correctly signed body that is not an event this endpoint takes: not a JSON object, no
    id or type, or an event of the other mode (live versus test) than the endpoint's key."""


@dataclass(frozen=True)
class WebhookEvent:
    """A verified Stripe event: its id (the inbox key), type and the object it is about."""

    stripe_event_id: str
    type: str
    created_at: datetime | None
    stripe_object_id: str | None
    stripe_object_type: str | None
    livemode: bool
    payload_json: str  # the raw body as received, for the inbox


def verify_webhook(
    raw_body: bytes,
    signature_header: str | None,
    secret: str,
    *,
    livemode: bool = False,
    tolerance_seconds: int = WEBHOOK_TOLERANCE_SECONDS,
    now: float | None = None,
) -> WebhookEvent:
    """Verify `Stripe-Signature` over the exact bytes received, then the event itself.

    WebhookSignatureError when the signature is missing or wrong, or dated more than
    `tolerance_seconds` before or after `now` (Unix seconds, default the wall clock: Stripe signs
    with its own); WebhookEventError when the signed body is not an event of the mode
    `livemode` says the endpoint's key is in. The body must be the raw request body:
    re-serialised JSON never matches the signature.
    """
    signed_at = _verified_signature(raw_body, signature_header, secret)
    skew = signed_at - (time.time() if now is None else now)
    if skew < -tolerance_seconds:
        raise WebhookSignatureError(
            f"signature timestamp {signed_at} is {-skew:.0f} s old "
            f"(tolerance {tolerance_seconds} s): a replay?"
        )
    if skew > tolerance_seconds:
        raise WebhookSignatureError(
            f"signature timestamp {signed_at} is {skew:.0f} s in the future "
            f"(tolerance {tolerance_seconds} s)"
        )
    return _event(raw_body, expected_livemode=livemode)


def _verified_signature(raw_body: bytes, signature_header: str | None, secret: str) -> int:
    """The timestamp (`t=`) of a signature that matches the body; its age is checked by the
    caller, in both directions."""
    if not secret:
        raise WebhookSignatureError("no webhook secret configured")
    try:
        stripe.WebhookSignature.verify_header(raw_body, signature_header, secret, tolerance=None)
    except stripe.SignatureVerificationError as exc:
        raise WebhookSignatureError(f"stripe signature verification failed: {exc}") from exc
    except UnicodeDecodeError:
        raise WebhookSignatureError("the body is not UTF-8, so not what Stripe signed") from None
    assert signature_header is not None  # verify_header refuses a missing header
    # The first `t=`, as verify_header reads it (and it parsed as an integer there).
    stamps = [part.split("=", 2) for part in signature_header.split(",")]
    return int(next(item[1] for item in stamps if item[0] == "t"))


def _event(raw_body: bytes, *, expected_livemode: bool) -> WebhookEvent:
    """The signed body as an event record; WebhookEventError naming the field that is wrong."""
    try:
        body = json.loads(raw_body)
    except RecursionError:
        raise WebhookEventError("the body is JSON nested too deeply to be an event") from None
    except ValueError as exc:
        raise WebhookEventError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise WebhookEventError(f"the body is a JSON {_json_type(body)}, not an event object")
    if body.get("object") == "v2.core.event":
        raise WebhookEventError("a thin (v2) event notification: this endpoint takes snapshots")
    event_id = _text(body, "id", MAX_EVENT_ID_LENGTH)
    event_type = _text(body, "type", MAX_EVENT_TYPE_LENGTH)
    where = f"event {event_id}"
    if type(body.get("livemode")) is not bool:
        raise WebhookEventError(f"{where}: livemode must be true or false")
    if body["livemode"] is not expected_livemode:
        mode, key = ("live", "test") if body["livemode"] else ("test", "live")
        raise WebhookEventError(f"{where}: a {mode}-mode event, but the Stripe key is a {key} key")
    data = body.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    obj = obj if isinstance(obj, dict) else {}
    return WebhookEvent(
        stripe_event_id=event_id,
        type=event_type,
        created_at=_created_at(body.get("created"), where),
        stripe_object_id=_optional_text(obj, "id", f"{where}: data.object.id"),
        stripe_object_type=_optional_text(obj, "object", f"{where}: data.object.object"),
        livemode=expected_livemode,
        payload_json=raw_body.decode("utf-8"),
    )


def _text(body: Mapping[str, Any], key: str, max_length: int) -> str:
    value = body.get(key)
    if value is None:
        raise WebhookEventError(f"the event has no {key}")
    if not isinstance(value, str) or not value.strip():
        raise WebhookEventError(f"the event's {key} must be a non-empty string")
    return _storable(value, f"the event's {key}", max_length)


def _optional_text(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise WebhookEventError(f"{where} must be a string")
    return _storable(value, where, MAX_EVENT_ID_LENGTH)


def _storable(value: str, where: str, max_length: int) -> str:
    """`value` when the inbox can store it: short enough, UTF-8, no NUL (PostgreSQL's text)."""
    if len(value) > max_length:
        raise WebhookEventError(f"{where} is longer than {max_length} characters")
    if "\x00" in value or not _encodable(value):
        raise WebhookEventError(f"{where} holds characters that are not text")
    return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (`"\ud800"` in the JSON)
        return False
    return True


def _created_at(value: object, where: str) -> datetime | None:
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= _MAX_UNIX:
        raise WebhookEventError(f"{where}: created must be a Unix timestamp, got {value!r:.40}")
    return datetime.fromtimestamp(value, tz=UTC)


def _json_type(value: object) -> str:
    names = {list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def event_object(event: WebhookEvent) -> dict[str, Any]:
    """The event's `data.object` as plain JSON (from the stored raw body)."""
    body = json.loads(event.payload_json)
    data = body.get("data") if isinstance(body, dict) else None
    obj = data.get("object") if isinstance(data, dict) else None
    return obj if isinstance(obj, dict) else {}


def event_subscription(event: WebhookEvent) -> StripeSubscription:
    """The subscription a `customer.subscription.*` event carries, as it was at the event (its
    status, `cancel_at`, `canceled_at`, `ended_at`); WebhookEventError for any other event."""
    if not event.type.startswith("customer.subscription.") or (
        event.stripe_object_type != "subscription"
    ):
        raise WebhookEventError(
            f"event {event.stripe_event_id}: a {event.type} event carries no subscription"
        )
    return convert.subscription(event_object(event))

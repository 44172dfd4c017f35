"""Stripe webhook verification: the raw body's signature checked, the event as a frozen record."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import stripe

from billing.core.errors import PermanentBillingError
from billing.stripe_gateway.convert import attr, from_unix

# Stripe's default: a signature older than five minutes is refused (replay protection).
WEBHOOK_TOLERANCE_SECONDS = 300


class WebhookSignatureError(PermanentBillingError):
    """The webhook's signature is missing, wrong, or its timestamp is outside the tolerance."""


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
    tolerance_seconds: int = WEBHOOK_TOLERANCE_SECONDS,
) -> WebhookEvent:
    """Verify `Stripe-Signature` over the exact bytes received; WebhookSignatureError if not.

    The body must be the raw request body: re-serialised JSON never matches the signature.
    """
    if not secret:
        raise WebhookSignatureError("no webhook secret configured")
    try:
        event = stripe.Webhook.construct_event(
            raw_body, signature_header, secret, tolerance=tolerance_seconds
        )
    except stripe.SignatureVerificationError as exc:
        raise WebhookSignatureError(f"stripe signature verification failed: {exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        # Not JSON, or a thin (v2) event notification sent to a snapshot endpoint.
        raise WebhookSignatureError(f"webhook body is not a Stripe event: {exc}") from exc
    obj: Any = attr(event, "data", "object")
    return WebhookEvent(
        stripe_event_id=str(event.id),
        type=str(event.type),
        created_at=from_unix(attr(event, "created")),
        stripe_object_id=None if attr(obj, "id") is None else str(attr(obj, "id")),
        stripe_object_type=attr(obj, "object"),
        livemode=bool(attr(event, "livemode")),
        payload_json=raw_body.decode("utf-8"),
    )


def event_object(event: WebhookEvent) -> dict[str, Any]:
    """The event's `data.object` as plain JSON (from the stored raw body)."""
    body = json.loads(event.payload_json)
    data = body.get("data") if isinstance(body, dict) else None
    obj = data.get("object") if isinstance(data, dict) else None
    return obj if isinstance(obj, dict) else {}

"""Thin (v2) events from an event destination: Stripe's asynchronous meter error reports.

Stripe validates meter events after accepting them; one that fails (no customer mapping, an
unknown customer, a bad value, a timestamp out of range, no meter for its name) is dropped and
reported by a thin event, `v1.billing.meter.error_report_triggered` (about a meter) or
`v1.billing.meter.no_meter_found`
(https://docs.stripe.com/billing/subscriptions/usage-based/recording-usage-api#error-handling).
The notification carries no details: `verify_thin_event` checks its signature with
`StripeClient.parse_event_notification`, and `fetch_meter_error_event` reads the full event
(`GET /v2/core/events/{id}`) as a frozen record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import stripe

from billing.stripe_gateway.gateway import StripeGateway
from billing.stripe_gateway.webhooks import (
    MAX_EVENT_ID_LENGTH,
    WEBHOOK_TOLERANCE_SECONDS,
    WebhookEventError,
    WebhookSignatureError,
)

ERROR_REPORT_TRIGGERED = "v1.billing.meter.error_report_triggered"
NO_METER_FOUND = "v1.billing.meter.no_meter_found"
METER_ERROR_EVENTS = (ERROR_REPORT_TRIGGERED, NO_METER_FOUND)


@dataclass(frozen=True)
class ThinNotification:
    """A verified thin event notification: which event to fetch."""

    stripe_event_id: str
    type: str
    related_object_id: str | None


@dataclass(frozen=True)
class MeterErrorSample:
    """One sample error of a report (or an error type Stripe gave no sample of)."""

    code: str
    type_error_count: int
    error_message: str | None
    identifier: str | None  # the meter event's identifier: our usage push's


@dataclass(frozen=True)
class MeterErrorEvent:
    """A meter error report as fetched: its window, counts and samples."""

    stripe_event_id: str
    type: str
    created_at: datetime | None
    stripe_meter_id: str | None
    error_count: int
    summary: str | None
    validation_start_at: datetime | None
    validation_end_at: datetime | None
    samples: tuple[MeterErrorSample, ...]


def verify_thin_event(
    gateway: StripeGateway,
    raw_body: bytes,
    signature_header: str | None,
    secret: str,
    *,
    livemode: bool = False,
) -> ThinNotification:
    """The notification, once its `Stripe-Signature` matches the exact bytes received.

    WebhookSignatureError when the secret is not set or the signature is missing, wrong or
    older than the tolerance; WebhookEventError when the signed body is not a thin event of the
    key's mode.
    """
    if not secret:
        raise WebhookSignatureError("no event destination secret configured")
    try:
        notification = gateway.client.parse_event_notification(
            raw_body, signature_header, secret, tolerance=WEBHOOK_TOLERANCE_SECONDS
        )
    except stripe.SignatureVerificationError as exc:
        raise WebhookSignatureError(f"stripe signature verification failed: {exc}") from exc
    except UnicodeDecodeError:
        raise WebhookSignatureError("the body is not UTF-8, so not what Stripe signed") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise WebhookEventError(f"not a thin event notification: {exc}") from None
    event_id = notification.id
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID_LENGTH:
        raise WebhookEventError("the thin event's id must be a string of at most 255 characters")
    if not isinstance(notification.type, str):
        raise WebhookEventError(f"thin event {event_id}: type must be a string")
    if notification.livemode is not livemode:
        raise WebhookEventError(f"thin event {event_id}: not of the Stripe key's mode")
    related = getattr(notification, "related_object", None)
    return ThinNotification(event_id, notification.type, getattr(related, "id", None))


def fetch_meter_error_event(gateway: StripeGateway, stripe_event_id: str) -> MeterErrorEvent:
    """`GET /v2/core/events/{id}`, read as a meter error report (WebhookEventError naming the
    field when it is not one)."""
    event = gateway._call(lambda: gateway.client.v2.core.events.retrieve(stripe_event_id))
    return meter_error_event(event.to_dict())


def meter_error_event(body: Mapping[str, Any]) -> MeterErrorEvent:
    event_id = str(body.get("id") or "")
    where = f"event {event_id}"
    if body.get("type") not in METER_ERROR_EVENTS:
        raise WebhookEventError(f"{where}: a {body.get('type')!r} event is no meter error report")
    data = _mapping(body.get("data"), f"{where}: data")
    reason = _mapping(data.get("reason"), f"{where}: data.reason")
    related = body.get("related_object")
    samples = []
    for n, item in enumerate(_list(reason.get("error_types"), f"{where}: error_types")):
        error_type = _mapping(item, f"{where}: error_types[{n}]")
        code = _text(error_type.get("code"), f"{where}: error_types[{n}].code")
        count = _count(error_type.get("error_count"), f"{where}: error_types[{n}].error_count")
        found = _list(error_type.get("sample_errors"), f"{where}: error_types[{n}].sample_errors")
        for m, raw in enumerate(found):
            sample = _mapping(raw, f"{where}: error_types[{n}].sample_errors[{m}]")
            request = sample.get("request")
            identifier = request.get("identifier") if isinstance(request, Mapping) else None
            message = sample.get("error_message")
            samples.append(MeterErrorSample(code, count, _storable(message), _storable(identifier)))
        if not found:
            samples.append(MeterErrorSample(code, count, None, None))
    summary = data.get("developer_message_summary")
    return MeterErrorEvent(
        stripe_event_id=event_id,
        type=str(body["type"]),
        created_at=_instant(body.get("created"), f"{where}: created"),
        stripe_meter_id=_storable(related.get("id")) if isinstance(related, Mapping) else None,
        error_count=_count(reason.get("error_count"), f"{where}: reason.error_count"),
        summary=_storable(summary),
        validation_start_at=_instant(data.get("validation_start"), f"{where}: validation_start"),
        validation_end_at=_instant(data.get("validation_end"), f"{where}: validation_end"),
        samples=tuple(samples),
    )


def _storable(value: object) -> str | None:
    """Stripe's text as a database holds it: no NUL (PostgreSQL), no lone surrogate."""
    if not isinstance(value, str):
        return None
    return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise WebhookEventError(f"{where} must be an object")
    return value


def _list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise WebhookEventError(f"{where} must be a list")
    return value


def _text(value: object, where: str) -> str:
    text = _storable(value)
    if not text:
        raise WebhookEventError(f"{where} must be a non-empty string")
    return text


def _count(value: object, where: str) -> int:
    if type(value) is not int or value < 0:
        raise WebhookEventError(f"{where} must be a count, got {value!r:.40}")
    return value


def _instant(value: object, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise WebhookEventError(f"{where} must be an ISO 8601 time, got {value!r:.40}") from None
    if parsed.tzinfo is None:
        raise WebhookEventError(f"{where} has no UTC offset: {value!r:.40}")
    return parsed

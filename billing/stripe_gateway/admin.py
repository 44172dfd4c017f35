"""Calls a person makes in the Stripe Dashboard, not the worker: webhook endpoints, raw requests.

`billing simulate` uses them to set up the web process's endpoint and to replay hand edits
(`stripe_call` lines) against Stripe exactly as given, so reconciliation meets what a support
person's edit really does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from billing.stripe_gateway.gateway import StripeGateway
from billing.stripe_gateway.params import check_idempotency_key


@dataclass(frozen=True)
class StripeWebhookEndpoint:
    stripe_webhook_endpoint_id: str
    url: str
    secret: str  # whsec_…: returned once, at creation


def create_webhook_endpoint(
    gateway: StripeGateway, url: str, events: Sequence[str], *, idempotency_key: str
) -> StripeWebhookEndpoint:
    params: dict[str, Any] = {"url": url, "enabled_events": list(events)}
    options: Any = {"idempotency_key": check_idempotency_key(idempotency_key)}
    endpoint = gateway._call(
        lambda: gateway.client.v1.webhook_endpoints.create(params, options)  # type: ignore[arg-type]
    )
    return StripeWebhookEndpoint(str(endpoint.id), str(endpoint.url), str(endpoint.secret))


def raw_call(
    gateway: StripeGateway,
    method: str,
    path: str,
    params: Mapping[str, Any],
    *,
    idempotency_key: str,
) -> dict[str, Any]:
    """`method path` with `params` (form-encoded as Stripe expects), the answer as JSON.

    A refusal raises `PermanentBillingError` naming Stripe's message, like every gateway call.
    """
    options: dict[str, Any] = {}
    if method.upper() == "POST":
        options["idempotency_key"] = check_idempotency_key(idempotency_key)
    response = gateway._call(
        lambda: gateway.client.raw_request(method.lower(), path, **dict(params), **options)
    )
    body = response.data if hasattr(response, "data") else {}
    return dict(body) if isinstance(body, Mapping) else {"data": body}


@dataclass(frozen=True)
class StripeEventDestination:
    stripe_event_destination_id: str
    url: str
    enabled_events: tuple[str, ...]
    secret: str  # whsec_…: returned once, at creation (asked for with `include`)


def create_event_destination(
    gateway: StripeGateway, name: str, url: str, events: Sequence[str], *, idempotency_key: str
) -> StripeEventDestination:
    """A thin-payload webhook event destination (`POST /v2/core/event_destinations`)."""
    params: dict[str, Any] = {
        "name": name,
        "type": "webhook_endpoint",
        "event_payload": "thin",
        "enabled_events": list(events),
        "webhook_endpoint": {"url": url},
        "include": ["webhook_endpoint.signing_secret"],
    }
    options: Any = {"idempotency_key": check_idempotency_key(idempotency_key)}
    destination = gateway._call(
        lambda: gateway.client.v2.core.event_destinations.create(params, options)  # type: ignore[arg-type]
    )
    endpoint = destination.webhook_endpoint
    return StripeEventDestination(
        str(destination.id),
        str(getattr(endpoint, "url", None) or url),
        tuple(str(e) for e in destination.enabled_events),
        str(getattr(endpoint, "signing_secret", None) or ""),
    )

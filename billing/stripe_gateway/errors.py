"""Stripe's errors classified: transient (retry with the same idempotency key) or permanent."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import stripe

from billing.core.errors import BillingError, PermanentBillingError, TransientBillingError


def map_stripe_error(exc: stripe.StripeError) -> BillingError:
    """Classify a stripe-python error as transient (retry with the same key) or permanent."""
    body = exc.json_body if isinstance(exc.json_body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    assert isinstance(error, dict)
    code = exc.code or error.get("code")
    status = exc.http_status
    message = str(error.get("message") or exc.user_message or type(exc).__name__)
    fields: dict[str, Any] = {
        "request_id": exc.request_id,
        "code": code,
        "http_status": status,
        "param": error.get("param"),
    }
    transient = (
        isinstance(exc, stripe.RateLimitError | stripe.APIConnectionError)
        or code == "lock_timeout"
        or status == 409  # concurrent request with the same idempotency key still in flight
        or status is None
        or status >= 500
    )
    if isinstance(exc, stripe.IdempotencyError) and status != 409:
        transient = False
    cls = TransientBillingError if transient else PermanentBillingError
    return cls(f"stripe {type(exc).__name__}: {message}", **fields)


@contextmanager
def mapped_errors() -> Iterator[None]:
    try:
        yield
    except stripe.StripeError as exc:
        raise map_stripe_error(exc) from exc

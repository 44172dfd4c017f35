"""Billing errors raised across the Stripe boundary: transient (retry later) versus permanent."""

from __future__ import annotations


class BillingError(Exception):
    """A failed call to the payment provider, with what Stripe said about it."""

    def __init__(
        self,
        message: str,
        *,
        request_id: str | None = None,
        code: str | None = None,
        http_status: int | None = None,
        param: str | None = None,
    ) -> None:
        self.message = message
        self.request_id = request_id
        self.code = code
        self.http_status = http_status
        self.param = param
        details = [
            f"{name}={value}"
            for name, value in (
                ("http_status", http_status),
                ("code", code),
                ("param", param),
                ("request_id", request_id),
            )
            if value is not None
        ]
        super().__init__(f"{message} ({', '.join(details)})" if details else message)


class TransientBillingError(BillingError):
    """Retrying the same call later (same idempotency key) may succeed: 429, 5xx, network, 409."""


class PermanentBillingError(BillingError):
    """Retrying cannot help: invalid request, authentication, a key reused with new params."""


class MeterStreamUnavailable(PermanentBillingError):
    """The account refuses meter event sessions (no v2 access, or a key without the permission):
    usage goes through the v1 meter event endpoint instead."""

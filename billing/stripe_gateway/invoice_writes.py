"""The gateway's invoice writes: create (a one-off invoice), update `auto_advance`, finalize.

A mixin of `StripeGateway` (billing/stripe_gateway/gateway.py), which provides the client, the
write guard and the conversion; kept apart only to keep each module short.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import stripe

from billing.stripe_gateway.records import StripeInvoice

if TYPE_CHECKING:
    from stripe.params import InvoiceCreateParams

T = TypeVar("T")


class InvoiceWrites:
    @property
    def client(self) -> stripe.StripeClient:
        raise NotImplementedError

    def _write(self, fn: Callable[[], T]) -> T:
        raise NotImplementedError

    @staticmethod
    def _options(idempotency_key: str) -> stripe.RequestOptions:
        raise NotImplementedError

    def _invoice_with_all_lines(self, inv: Any) -> StripeInvoice:
        raise NotImplementedError

    def create_invoice(
        self,
        *,
        stripe_customer_id: str,
        description: str,
        idempotency_key: str,
        metadata: Mapping[str, str] | None = None,
    ) -> StripeInvoice:
        """A one-off invoice of the customer's pending invoice items (`pending_invoice_items_
        behavior=include`), advanced automatically once finalized."""
        params: InvoiceCreateParams = {
            "customer": stripe_customer_id,
            "description": description,
            "pending_invoice_items_behavior": "include",
            "auto_advance": True,
        }
        if metadata:
            params["metadata"] = dict(metadata)
        options = self._options(idempotency_key)
        inv = self._write(lambda: self.client.v1.invoices.create(params, options))
        return self._invoice_with_all_lines(inv)

    def set_invoice_auto_advance(
        self, stripe_invoice_id: str, *, auto_advance: bool, idempotency_key: str
    ) -> StripeInvoice:
        options = self._options(idempotency_key)
        inv = self._write(
            lambda: self.client.v1.invoices.update(
                stripe_invoice_id, {"auto_advance": auto_advance}, options
            )
        )
        return self._invoice_with_all_lines(inv)

    def finalize_invoice(self, stripe_invoice_id: str, *, idempotency_key: str) -> StripeInvoice:
        options = self._options(idempotency_key)
        inv = self._write(
            lambda: self.client.v1.invoices.finalize_invoice(stripe_invoice_id, None, options)
        )
        return self._invoice_with_all_lines(inv)

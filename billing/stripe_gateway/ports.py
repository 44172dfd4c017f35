"""The parts of the gateway the workflows depend on, as protocols (fakes stand in for them in
service tests): reading invoices and meter summaries, and adding an invoice item (pending, or
onto a draft)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal, Protocol

from billing.stripe_gateway.records import (
    StripeInvoice,
    StripeInvoiceItem,
    StripeMeterEventSummary,
)

InvoiceStatus = Literal["draft", "open", "paid", "uncollectible", "void"]


class InvoiceReader(Protocol):
    def list_invoices(
        self,
        *,
        stripe_customer_id: str | None = None,
        stripe_subscription_id: str | None = None,
        status: InvoiceStatus | None = None,
        created_from_at: datetime | None = None,
        created_before_at: datetime | None = None,
    ) -> list[StripeInvoice]: ...


class MeterSummaryReader(Protocol):
    def list_meter_event_summaries(
        self,
        stripe_meter_id: str,
        *,
        stripe_customer_id: str,
        start_at: datetime,
        end_at: datetime,
        value_grouping_window: Literal["day", "hour"] | None = None,
    ) -> list[StripeMeterEventSummary]: ...


class InvoiceItemWriter(Protocol):
    def create_invoice_item(
        self,
        *,
        stripe_customer_id: str,
        amount: int,
        currency: str,
        description: str,
        idempotency_key: str,
        stripe_subscription_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        stripe_invoice_id: str | None = None,
    ) -> StripeInvoiceItem: ...

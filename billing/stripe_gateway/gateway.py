"""The one place that talks to Stripe: typed calls on a lazily built `stripe.StripeClient`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import stripe

from billing.core.components import ProrationBehavior
from billing.core.errors import PermanentBillingError
from billing.core.locks import confirm_held_locks
from billing.core.money import format_decimal
from billing.stripe_gateway import convert
from billing.stripe_gateway.errors import mapped_errors
from billing.stripe_gateway.invoice_reads import InvoiceReads
from billing.stripe_gateway.invoice_writes import InvoiceWrites
from billing.stripe_gateway.meter_stream import MeterStream
from billing.stripe_gateway.params import check_idempotency_key, item_params, price_create_params
from billing.stripe_gateway.records import (
    PriceSpec,
    StripeConfig,
    StripeCustomer,
    StripeInvoice,
    StripeInvoiceItem,
    StripeMeter,
    StripeMeterEvent,
    StripeMeterEventSummary,
    StripePrice,
    StripeProduct,
    StripeSubscription,
    StripeSubscriptionItem,
    SubscriptionItemSpec,
)

if TYPE_CHECKING:
    from stripe.params import (
        CustomerCreateParams,
        InvoiceCreatePreviewParams,
        InvoiceItemCreateParams,
        ProductCreateParams,
        SubscriptionCancelParams,
        SubscriptionCreateParams,
        SubscriptionItemUpdateParams,
        SubscriptionUpdateParams,
    )
    from stripe.params.billing import MeterCreateParams, MeterEventCreateParams

T = TypeVar("T")
_PAGE = 100


class StripeGateway(InvoiceWrites, InvoiceReads, MeterStream):
    """Typed Stripe operations; every POST takes the caller's deterministic idempotency key."""

    def __init__(
        self,
        config: StripeConfig,
        *,
        http_client: Any | None = None,
        http_client_factory: Callable[[], Any] | None = None,
    ) -> None:
        """`http_client_factory` builds the HTTP client anew in each process (after a fork)."""
        self.config = config
        self._http_client = http_client
        self._http_client_factory = http_client_factory
        self._client: stripe.StripeClient | None = None
        self._client_pid: int | None = None

    # ------------------------------------------------------------------ client

    @property
    def client(self) -> stripe.StripeClient:
        """The StripeClient, built on first use in each process (safe across Celery forks)."""
        if self._client is None or self._client_pid != os.getpid():
            if self._http_client is not None:
                http_client = self._http_client
            elif self._http_client_factory is not None:
                http_client = self._http_client_factory()
            else:
                http_client = stripe.RequestsClient(timeout=self.config.timeout_seconds)
            self._client = stripe.StripeClient(
                self.config.api_key,
                base_addresses={
                    "api": self.config.api_base,
                    "meter_events": self.config.meter_events_base or self.config.api_base,
                },
                max_network_retries=self.config.max_network_retries,
                http_client=http_client,
            )
            self._client_pid = os.getpid()
        return self._client

    def _call(self, fn: Callable[[], T]) -> T:
        with mapped_errors():
            return fn()

    def _write(self, fn: Callable[[], T]) -> T:
        """A POST with side effects, sent only while every per-org lock this thread holds is still
        its own (billing.core.locks): a holder that lost its org's lock stops before writing."""
        confirm_held_locks()
        return self._call(fn)

    @staticmethod
    def _options(idempotency_key: str) -> stripe.RequestOptions:
        return {"idempotency_key": check_idempotency_key(idempotency_key)}

    def _all_pages(self, list_page: Callable[[Any], Any], base: Mapping[str, Any]) -> list[Any]:
        """Every object of a list endpoint, following `has_more` with `starting_after`."""
        params: dict[str, Any] = {**base, "limit": _PAGE}
        result: list[Any] = []
        while True:
            page = self._page(list_page, dict(params))
            data = convert.list_data(page)
            result.extend(data)
            if not convert.attr(page, "has_more") or not data:
                return result
            params["starting_after"] = str(data[-1].id)

    def _page(self, list_page: Callable[[Any], Any], params: dict[str, Any]) -> Any:
        with mapped_errors():
            return list_page(params)

    # ------------------------------------------------------------------ customers

    def create_customer(
        self,
        *,
        metadata: Mapping[str, str],
        idempotency_key: str,
        email: str | None = None,
        name: str | None = None,
        stripe_test_clock_id: str | None = None,
    ) -> StripeCustomer:
        params: CustomerCreateParams = {"metadata": dict(metadata)}
        if email:
            params["email"] = email
        if name:
            params["name"] = name
        if stripe_test_clock_id:
            params["test_clock"] = stripe_test_clock_id
        options = self._options(idempotency_key)
        return convert.customer(
            self._write(lambda: self.client.v1.customers.create(params, options))
        )

    def retrieve_customer(self, stripe_customer_id: str) -> StripeCustomer:
        return convert.customer(
            self._call(lambda: self.client.v1.customers.retrieve(stripe_customer_id))
        )

    def find_customers(
        self, *, metadata: Mapping[str, str], stripe_test_clock_id: str | None = None
    ) -> list[StripeCustomer]:
        """Customers whose metadata contains `metadata` (a full listing, read-after-write safe).

        The Search API would be cheaper but is eventually consistent, so it cannot resolve a
        write whose outcome we do not know.
        """
        base: dict[str, Any] = {}
        if stripe_test_clock_id:
            base["test_clock"] = stripe_test_clock_id
        rows = self._all_pages(self.client.v1.customers.list, base)
        found = [convert.customer(row) for row in rows]
        return [c for c in found if all(c.metadata.get(k) == v for k, v in metadata.items())]

    # ------------------------------------------------------------------ catalog

    def create_product(
        self, *, name: str, metadata: Mapping[str, str], idempotency_key: str
    ) -> StripeProduct:
        params: ProductCreateParams = {"name": name, "metadata": dict(metadata)}
        options = self._options(idempotency_key)
        return convert.product(self._write(lambda: self.client.v1.products.create(params, options)))

    def retrieve_product(self, stripe_product_id: str) -> StripeProduct:
        return convert.product(
            self._call(lambda: self.client.v1.products.retrieve(stripe_product_id))
        )

    def list_products(self) -> list[StripeProduct]:
        rows = self._all_pages(self.client.v1.products.list, {})
        return [convert.product(row) for row in rows]

    def create_meter(
        self,
        *,
        display_name: str,
        event_name: str,
        formula: Literal["count", "last", "sum"],
        event_time_window: Literal["day", "hour"] | None,
        idempotency_key: str,
    ) -> StripeMeter:
        """A meter keyed by `stripe_customer_id` with value key `value`."""
        params: MeterCreateParams = {
            "display_name": display_name,
            "event_name": event_name,
            "default_aggregation": {"formula": formula},
            "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
            "value_settings": {"event_payload_key": "value"},
        }
        if event_time_window:
            params["event_time_window"] = event_time_window
        options = self._options(idempotency_key)
        return convert.meter(
            self._write(lambda: self.client.v1.billing.meters.create(params, options))
        )

    def list_meters(self) -> list[StripeMeter]:
        rows = self._all_pages(self.client.v1.billing.meters.list, {})
        return [convert.meter(row) for row in rows]

    def create_price(self, spec: PriceSpec, *, idempotency_key: str) -> StripePrice:
        params = price_create_params(spec)
        options = self._options(idempotency_key)
        return convert.price(self._write(lambda: self.client.v1.prices.create(params, options)))

    def retrieve_price(self, stripe_price_id: str) -> StripePrice:
        return convert.price(
            self._call(
                lambda: self.client.v1.prices.retrieve(stripe_price_id, {"expand": ["tiers"]})
            )
        )

    def list_prices(self, lookup_keys: Sequence[str]) -> list[StripePrice]:
        """Prices (active or not) holding any of `lookup_keys`, tiers expanded."""
        found: list[StripePrice] = []
        keys = list(lookup_keys)
        for start in range(0, len(keys), 10):  # Stripe accepts at most 10 lookup keys per call
            chunk = keys[start : start + 10]
            rows = self._all_pages(
                self.client.v1.prices.list, {"lookup_keys": chunk, "expand": ["data.tiers"]}
            )
            found.extend(convert.price(row) for row in rows)
        return found

    # ------------------------------------------------------------------ subscriptions

    def create_subscription(
        self,
        *,
        stripe_customer_id: str,
        items: Sequence[SubscriptionItemSpec],
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> StripeSubscription:
        """One subscription in flexible billing mode; items may mix annual and monthly prices."""
        params: SubscriptionCreateParams = {
            "customer": stripe_customer_id,
            "items": [item_params(item) for item in items],  # type: ignore[misc]
            "billing_mode": {"type": "flexible"},
            "metadata": dict(metadata),
        }
        options = self._options(idempotency_key)
        sub = self._write(lambda: self.client.v1.subscriptions.create(params, options))
        return self._subscription_with_all_items(sub)

    def retrieve_subscription(self, stripe_subscription_id: str) -> StripeSubscription:
        sub = self._call(lambda: self.client.v1.subscriptions.retrieve(stripe_subscription_id))
        return self._subscription_with_all_items(sub)

    def list_subscriptions(self, stripe_customer_id: str) -> list[StripeSubscription]:
        rows = self._all_pages(
            self.client.v1.subscriptions.list, {"customer": stripe_customer_id, "status": "all"}
        )
        return [self._subscription_with_all_items(row) for row in rows]

    def _subscription_with_all_items(self, sub: Any) -> StripeSubscription:
        items = convert.attr(sub, "items")
        data = convert.list_data(items)
        if convert.attr(items, "has_more"):
            data = self._all_pages(
                self.client.v1.subscription_items.list, {"subscription": str(sub.id)}
            )
        return convert.subscription(sub, data)

    def cancel_subscription(
        self, stripe_subscription_id: str, *, invoice_now: bool, prorate: bool, idempotency_key: str
    ) -> StripeSubscription:
        """End it now (`DELETE`): `invoice_now` bills the usage so far and the pending items on a
        final invoice, `prorate` credits unused licensed time. A retry that meets it already
        canceled (the first answer lost) reads it back instead of failing."""
        params: SubscriptionCancelParams = {"invoice_now": invoice_now, "prorate": prorate}
        options = self._options(idempotency_key)
        cancel = self.client.v1.subscriptions.cancel
        try:
            sub = self._write(lambda: cancel(stripe_subscription_id, params, options))
        except PermanentBillingError:
            current = self.retrieve_subscription(stripe_subscription_id)
            if current.status != "canceled":
                raise
            return current
        return self._subscription_with_all_items(sub)

    def set_cancel_at(
        self, stripe_subscription_id: str, cancel_at: datetime | None, *, idempotency_key: str
    ) -> StripeSubscription:
        """End the subscription at `cancel_at` (a term end, so never prorated: no renewal, a final
        usage invoice), or withdraw a scheduled end with None (`cancel_at=""`)."""
        when = "" if cancel_at is None else convert.to_unix(cancel_at)
        params: SubscriptionUpdateParams = {"cancel_at": when, "proration_behavior": "none"}
        options = self._options(idempotency_key)
        update = self.client.v1.subscriptions.update
        sub = self._write(lambda: update(stripe_subscription_id, params, options))
        return self._subscription_with_all_items(sub)

    def update_subscription_item_quantity(
        self,
        stripe_subscription_item_id: str,
        *,
        quantity: int,
        proration_behavior: ProrationBehavior,
        idempotency_key: str,
        proration_at: datetime | None = None,
    ) -> StripeSubscriptionItem:
        params: SubscriptionItemUpdateParams = {
            "quantity": quantity,
            "proration_behavior": proration_behavior,
        }
        if proration_at is not None:
            params["proration_date"] = convert.to_unix(proration_at)
        options = self._options(idempotency_key)
        return convert.subscription_item(
            self._write(
                lambda: self.client.v1.subscription_items.update(
                    stripe_subscription_item_id, params, options
                )
            )
        )

    # ------------------------------------------------------------------ usage

    def create_meter_event(
        self,
        *,
        event_name: str,
        stripe_customer_id: str,
        value: int | Decimal,
        timestamp_at: datetime,
        identifier: str,
        idempotency_key: str | None = None,
    ) -> StripeMeterEvent:
        """Report a value; `identifier` is Stripe's dedup key and the default idempotency key."""
        params: MeterEventCreateParams = {
            "event_name": event_name,
            "identifier": identifier,
            "timestamp": convert.to_unix(timestamp_at),
            "payload": {
                "stripe_customer_id": stripe_customer_id,
                "value": format_decimal(Decimal(value)),
            },
        }
        options = self._options(idempotency_key or identifier)
        return convert.meter_event(
            self._write(lambda: self.client.v1.billing.meter_events.create(params, options))
        )

    def list_meter_event_summaries(
        self,
        stripe_meter_id: str,
        *,
        stripe_customer_id: str,
        start_at: datetime,
        end_at: datetime,
        value_grouping_window: Literal["day", "hour"] | None = None,
    ) -> list[StripeMeterEventSummary]:
        base: dict[str, Any] = {
            "customer": stripe_customer_id,
            "start_time": convert.to_unix(start_at),
            "end_time": convert.to_unix(end_at),
        }
        if value_grouping_window:
            base["value_grouping_window"] = value_grouping_window
        rows = self._all_pages(
            lambda p: self.client.v1.billing.meters.event_summaries.list(stripe_meter_id, p), base
        )
        return [convert.meter_event_summary(row) for row in rows]

    # ------------------------------------------------------------------ invoices

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
    ) -> StripeInvoiceItem:
        """An invoice item: pending (swept into the next invoice), or added to a draft."""
        params: InvoiceItemCreateParams = {
            "customer": stripe_customer_id,
            "amount": amount,
            "currency": currency,
            "description": description,
        }
        if stripe_subscription_id:
            params["subscription"] = stripe_subscription_id
        if stripe_invoice_id:
            params["invoice"] = stripe_invoice_id
        if metadata:
            params["metadata"] = dict(metadata)
        options = self._options(idempotency_key)
        return convert.invoice_item(
            self._write(lambda: self.client.v1.invoice_items.create(params, options))
        )

    def list_invoices(
        self,
        *,
        stripe_customer_id: str | None = None,
        stripe_subscription_id: str | None = None,
        status: Literal["draft", "open", "paid", "uncollectible", "void"] | None = None,
        created_from_at: datetime | None = None,
        created_before_at: datetime | None = None,
    ) -> list[StripeInvoice]:
        """Invoices matching the filters, each with all of its lines."""
        base: dict[str, Any] = {}
        if stripe_customer_id:
            base["customer"] = stripe_customer_id
        if stripe_subscription_id:
            base["subscription"] = stripe_subscription_id
        if status:
            base["status"] = status
        created: dict[str, int] = {}
        if created_from_at:
            created["gte"] = convert.to_unix(created_from_at)
        if created_before_at:
            created["lt"] = convert.to_unix(created_before_at)
        if created:
            base["created"] = created
        rows = self._all_pages(self.client.v1.invoices.list, base)
        return [self._invoice_with_all_lines(row) for row in rows]

    def retrieve_invoice(self, stripe_invoice_id: str) -> StripeInvoice:
        inv = self._call(lambda: self.client.v1.invoices.retrieve(stripe_invoice_id))
        return self._invoice_with_all_lines(inv)

    def _invoice_with_all_lines(self, inv: Any) -> StripeInvoice:
        lines = convert.attr(inv, "lines")
        data = convert.list_data(lines)
        if convert.attr(lines, "has_more") and data:
            more = self._all_pages(
                lambda p: self.client.v1.invoices.line_items.list(str(inv.id), p),
                {"starting_after": str(data[-1].id)},
            )
            data.extend(more)
        return convert.invoice(inv, data)

    def preview_invoice(
        self,
        *,
        stripe_customer_id: str,
        stripe_subscription_id: str,
        item_quantities: Mapping[str, int] | None = None,
        proration_behavior: ProrationBehavior | None = None,
        proration_at: datetime | None = None,
    ) -> StripeInvoice:
        """The next invoice as Stripe would draft it, optionally with changed item quantities."""
        params: InvoiceCreatePreviewParams = {
            "customer": stripe_customer_id,
            "subscription": stripe_subscription_id,
        }
        details: dict[str, Any] = {}
        if item_quantities:
            details["items"] = [{"id": k, "quantity": v} for k, v in item_quantities.items()]
        if proration_behavior:
            details["proration_behavior"] = proration_behavior
        if proration_at is not None:
            details["proration_date"] = convert.to_unix(proration_at)
        if details:
            params["subscription_details"] = details  # type: ignore[typeddict-item]
        # create_preview is a POST without side effects; a fixed key keeps retries identical.
        inv = self._call(lambda: self.client.v1.invoices.create_preview(params))
        return self._invoice_with_all_lines(inv)

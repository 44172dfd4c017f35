"""An in-memory Stripe gateway for service tests: records calls and honours idempotency keys."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from billing.errors import TransientBillingError
from billing.stripe_gateway import (
    PriceSpec,
    StripeCustomer,
    StripeMeter,
    StripePrice,
    StripeProduct,
    StripeSubscription,
    StripeSubscriptionItem,
    SubscriptionItemSpec,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class FakeStripe:
    """Writes are keyed by idempotency key: a repeated key returns the first result."""

    calls: list[tuple[str, str | None]] = field(default_factory=list)
    products: dict[str, StripeProduct] = field(default_factory=dict)
    meters: dict[str, StripeMeter] = field(default_factory=dict)
    prices: dict[str, StripePrice] = field(default_factory=dict)
    customers: dict[str, StripeCustomer] = field(default_factory=dict)
    subscriptions: dict[str, StripeSubscription] = field(default_factory=dict)
    saved: dict[str, Any] = field(default_factory=dict)
    # Simulated faults: "lose" = the write happens but the response is lost (TransientBillingError).
    lose_response_of: set[str] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _new(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids)}"

    def _write(self, name: str, key: str, make: Any) -> Any:
        self.calls.append((name, key))
        if key not in self.saved:
            self.saved[key] = make()
        if name in self.lose_response_of:
            self.lose_response_of.discard(name)
            raise TransientBillingError("connection reset", http_status=None)
        return self.saved[key]

    def writes(self, name: str | None = None) -> list[tuple[str, str | None]]:
        reads = {"list_products", "list_meters", "list_prices", "find_customers"}
        reads |= {"list_subscriptions"}
        return [c for c in self.calls if c[0] not in reads and (name is None or c[0] == name)]

    # ------------------------------------------------------------------ catalog

    def list_products(self) -> list[StripeProduct]:
        self.calls.append(("list_products", None))
        return list(self.products.values())

    def create_product(
        self, *, name: str, metadata: Mapping[str, str], idempotency_key: str
    ) -> StripeProduct:
        def make() -> StripeProduct:
            product = StripeProduct(self._new("prod"), name, True, MappingProxyType(dict(metadata)))
            self.products[product.stripe_product_id] = product
            return product

        result: StripeProduct = self._write("create_product", idempotency_key, make)
        return result

    def list_meters(self) -> list[StripeMeter]:
        self.calls.append(("list_meters", None))
        return list(self.meters.values())

    def create_meter(
        self,
        *,
        display_name: str,
        event_name: str,
        formula: str,
        event_time_window: str | None,
        idempotency_key: str,
    ) -> StripeMeter:
        def make() -> StripeMeter:
            meter = StripeMeter(
                self._new("mtr"),
                event_name,
                display_name,
                formula,
                event_time_window,
                "stripe_customer_id",
                "value",
                "active",
            )
            self.meters[meter.stripe_meter_id] = meter
            return meter

        result: StripeMeter = self._write("create_meter", idempotency_key, make)
        return result

    def list_prices(self, lookup_keys: Sequence[str]) -> list[StripePrice]:
        self.calls.append(("list_prices", None))
        return [p for p in self.prices.values() if p.lookup_key in set(lookup_keys)]

    def create_price(self, spec: PriceSpec, *, idempotency_key: str) -> StripePrice:
        def make() -> StripePrice:
            for pid, other in list(self.prices.items()):
                if other.lookup_key == spec.lookup_key:
                    assert spec.transfer_lookup_key, f"lookup key {spec.lookup_key} is taken"
                    self.prices[pid] = replace(other, lookup_key=None)
            price = StripePrice(
                self._new("price"),
                spec.stripe_product_id,
                True,
                spec.lookup_key,
                spec.terms,
                MappingProxyType(dict(spec.metadata)),
            )
            self.prices[price.stripe_price_id] = price
            return price

        result: StripePrice = self._write("create_price", idempotency_key, make)
        return result

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
        def make() -> StripeCustomer:
            customer = StripeCustomer(
                self._new("cus"),
                email,
                name,
                stripe_test_clock_id,
                NOW,
                MappingProxyType(dict(metadata)),
            )
            self.customers[customer.stripe_customer_id] = customer
            return customer

        result: StripeCustomer = self._write("create_customer", idempotency_key, make)
        return result

    def find_customers(
        self, *, metadata: Mapping[str, str], stripe_test_clock_id: str | None = None
    ) -> list[StripeCustomer]:
        self.calls.append(("find_customers", None))
        return [
            c
            for c in self.customers.values()
            if all(c.metadata.get(k) == v for k, v in metadata.items())
            and (stripe_test_clock_id is None or c.stripe_test_clock_id == stripe_test_clock_id)
        ]

    def create_subscription(
        self,
        *,
        stripe_customer_id: str,
        items: Sequence[SubscriptionItemSpec],
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> StripeSubscription:
        def make() -> StripeSubscription:
            sub_items = []
            for spec in items:
                price = self.prices[spec.stripe_price_id]
                end = datetime(
                    2027 if price.terms.interval == "year" else 2026,
                    2 if price.terms.interval == "month" else 1,
                    1,
                    tzinfo=UTC,
                )
                sub_items.append(
                    StripeSubscriptionItem(
                        self._new("si"),
                        spec.stripe_price_id,
                        spec.quantity,
                        NOW,
                        end,
                        MappingProxyType(dict(spec.metadata)),
                    )
                )
            sub = StripeSubscription(
                self._new("sub"),
                stripe_customer_id,
                "active",
                "flexible",
                NOW,
                tuple(sub_items),
                MappingProxyType(dict(metadata)),
            )
            self.subscriptions[sub.stripe_subscription_id] = sub
            return sub

        result: StripeSubscription = self._write("create_subscription", idempotency_key, make)
        return result

    def list_subscriptions(self, stripe_customer_id: str) -> list[StripeSubscription]:
        self.calls.append(("list_subscriptions", None))
        return [
            s for s in self.subscriptions.values() if s.stripe_customer_id == stripe_customer_id
        ]

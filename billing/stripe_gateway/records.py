"""Frozen snapshots of the Stripe objects the worker reads, free of stripe-python types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class StripeConfig:
    """How to reach Stripe (or the emulator); built from settings by the composition root."""

    api_key: str = field(repr=False)
    api_base: str = "https://api.stripe.com"
    meter_events_base: str | None = None  # None = api_base
    max_network_retries: int = 2
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class StripeCustomer:
    stripe_customer_id: str
    email: str | None
    name: str | None
    stripe_test_clock_id: str | None
    created_at: datetime | None
    metadata: Mapping[str, str] = field(default_factory=_empty)


@dataclass(frozen=True)
class StripeProduct:
    stripe_product_id: str
    name: str
    active: bool
    metadata: Mapping[str, str] = field(default_factory=_empty)


@dataclass(frozen=True)
class StripeMeter:
    stripe_meter_id: str
    event_name: str
    display_name: str
    formula: str | None
    event_time_window: str | None
    customer_payload_key: str | None
    value_payload_key: str | None
    status: str | None


@dataclass(frozen=True)
class PriceTier:
    """One graduated tier in Stripe's terms: cents per unit (≤ 12 places) up to `up_to`."""

    up_to: int | None  # None = "inf"
    unit_amount_decimal: Decimal
    flat_amount: int = 0


@dataclass(frozen=True)
class PriceTerms:
    """Everything about a price that cannot change once created; compared to detect drift.

    Exactly one of `unit_amount_decimal` (per-unit pricing) and `tiers` (graduated) is set.
    """

    currency: str
    interval: str
    usage_type: str  # "licensed" | "metered"
    stripe_meter_id: str | None
    unit_amount_decimal: Decimal | None
    tiers: tuple[PriceTier, ...] = ()

    def describe(self) -> str:
        """A one-line human summary, used to show both sides of a drift."""
        head = f"{self.currency} per {self.interval} {self.usage_type}"
        if self.stripe_meter_id:
            head += f" meter={self.stripe_meter_id}"
        if self.unit_amount_decimal is not None:
            return f"{head} unit={_fmt(self.unit_amount_decimal)}¢"
        parts = [
            f"≤{'inf' if t.up_to is None else t.up_to}@{_fmt(t.unit_amount_decimal)}¢"
            + (f"+{t.flat_amount}¢" if t.flat_amount else "")
            for t in self.tiers
        ]
        return f"{head} tiers=[{', '.join(parts)}]"


def _fmt(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class PriceSpec:
    """A price to create: its immutable terms plus how we find it again."""

    stripe_product_id: str
    terms: PriceTerms
    lookup_key: str
    nickname: str
    metadata: Mapping[str, str] = field(default_factory=_empty)
    transfer_lookup_key: bool = False


@dataclass(frozen=True)
class StripePrice:
    stripe_price_id: str
    stripe_product_id: str
    active: bool
    lookup_key: str | None
    terms: PriceTerms
    metadata: Mapping[str, str] = field(default_factory=_empty)


@dataclass(frozen=True)
class SubscriptionItemSpec:
    stripe_price_id: str
    quantity: int | None  # None for metered prices
    metadata: Mapping[str, str] = field(default_factory=_empty)


@dataclass(frozen=True)
class StripeSubscriptionItem:
    stripe_subscription_item_id: str
    stripe_price_id: str | None
    quantity: int | None
    current_period_start_at: datetime | None
    current_period_end_at: datetime | None
    metadata: Mapping[str, str] = field(default_factory=_empty)


@dataclass(frozen=True)
class StripeSubscription:
    """A subscription; `cancel_at` is a scheduled end, `ended_at` the end that happened, and
    `canceled_at` when the cancellation was asked for (Stripe: for a scheduled end, the time of
    the request, not of the end)."""

    stripe_subscription_id: str
    stripe_customer_id: str
    status: str
    billing_mode: str | None
    created_at: datetime | None
    items: tuple[StripeSubscriptionItem, ...]
    metadata: Mapping[str, str] = field(default_factory=_empty)
    cancel_at: datetime | None = None
    canceled_at: datetime | None = None
    ended_at: datetime | None = None
    cancel_at_period_end: bool = False
    stripe_latest_invoice_id: str | None = None

    def item_for_price(self, stripe_price_id: str) -> StripeSubscriptionItem | None:
        return next((i for i in self.items if i.stripe_price_id == stripe_price_id), None)


@dataclass(frozen=True)
class StripeMeterEvent:
    event_name: str
    identifier: str
    timestamp_at: datetime | None
    payload: Mapping[str, str] = field(default_factory=_empty)


@dataclass(frozen=True)
class MeterEventInput:
    """One meter event to report: `identifier` is Stripe's 24-hour dedup key."""

    event_name: str
    stripe_customer_id: str
    value: int | Decimal
    timestamp_at: datetime
    identifier: str


@dataclass(frozen=True)
class StripeMeterEventSummary:
    stripe_meter_id: str
    aggregated_value: Decimal
    start_at: datetime
    end_at: datetime


@dataclass(frozen=True)
class StripeInvoiceItem:
    stripe_invoice_item_id: str
    stripe_customer_id: str
    amount: int
    currency: str
    description: str | None
    stripe_invoice_id: str | None
    metadata: Mapping[str, str] = field(default_factory=_empty)


@dataclass(frozen=True)
class StripeInvoiceLine:
    stripe_invoice_line_id: str
    amount: int
    currency: str
    description: str | None
    quantity_decimal: Decimal | None
    stripe_price_id: str | None
    proration: bool
    stripe_subscription_item_id: str | None
    stripe_invoice_item_id: str | None
    period_start_at: datetime | None
    period_end_at: datetime | None
    metadata: Mapping[str, str] = field(default_factory=_empty)


@dataclass(frozen=True)
class StripeInvoice:
    stripe_invoice_id: str | None  # None for a preview
    stripe_customer_id: str
    stripe_subscription_id: str | None
    status: str | None
    billing_reason: str | None
    currency: str
    subtotal_amount: int
    total_amount: int
    amount_due: int
    auto_advance: bool | None
    period_start_at: datetime | None
    period_end_at: datetime | None
    created_at: datetime | None
    lines: tuple[StripeInvoiceLine, ...]
    metadata: Mapping[str, str] = field(default_factory=_empty)

"""Conversion of stripe-python response objects into our frozen records, reading defensively."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from billing.stripe_gateway.records import (
    PriceTerms,
    PriceTier,
    StripeCustomer,
    StripeInvoice,
    StripeInvoiceItem,
    StripeInvoiceLine,
    StripeMeter,
    StripeMeterEvent,
    StripeMeterEventSummary,
    StripePrice,
    StripeProduct,
    StripeSubscription,
    StripeSubscriptionItem,
)


def attr(obj: Any, *path: str) -> Any:
    """`obj.a.b.c`, or None as soon as a link is missing (StripeObject is not a dict in v16)."""
    current = obj
    for name in path:
        if current is None:
            return None
        if isinstance(current, Mapping):
            current = current.get(name)
        else:
            current = getattr(current, name, None)
    return current


def ref_id(value: Any) -> str | None:
    """An id field that may be a plain id or an expanded object."""
    if value is None or isinstance(value, str):
        return value
    found = attr(value, "id")
    return str(found) if found is not None else None


def from_unix(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value), tz=UTC)


def to_unix(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError(f"{value!r} is a naive datetime; billing datetimes are UTC-aware")
    return int(value.timestamp())


def to_decimal(value: Any) -> Decimal | None:
    """Decimal from Stripe's Decimal, str or int fields (floats go through their repr)."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise ValueError(f"unexpected boolean amount {value!r}")
    if isinstance(value, int | str):
        return Decimal(value)
    return Decimal(repr(value))  # aggregated_value is typed float by stripe-python


def metadata(obj: Any) -> Mapping[str, str]:
    raw = attr(obj, "metadata")
    if raw is None:
        return MappingProxyType({})
    data = raw if isinstance(raw, Mapping) else raw.to_dict()
    return MappingProxyType({str(k): str(v) for k, v in data.items()})


def list_data(obj: Any) -> list[Any]:
    data = attr(obj, "data")
    return list(data) if data is not None else []


def customer(obj: Any) -> StripeCustomer:
    return StripeCustomer(
        stripe_customer_id=str(obj.id),
        email=attr(obj, "email"),
        name=attr(obj, "name"),
        stripe_test_clock_id=ref_id(attr(obj, "test_clock")),
        created_at=from_unix(attr(obj, "created")),
        metadata=metadata(obj),
    )


def product(obj: Any) -> StripeProduct:
    return StripeProduct(
        stripe_product_id=str(obj.id),
        name=str(attr(obj, "name") or ""),
        active=bool(attr(obj, "active")),
        metadata=metadata(obj),
    )


def meter(obj: Any) -> StripeMeter:
    return StripeMeter(
        stripe_meter_id=str(obj.id),
        event_name=str(attr(obj, "event_name")),
        display_name=str(attr(obj, "display_name") or ""),
        formula=attr(obj, "default_aggregation", "formula"),
        event_time_window=attr(obj, "event_time_window"),
        customer_payload_key=attr(obj, "customer_mapping", "event_payload_key"),
        value_payload_key=attr(obj, "value_settings", "event_payload_key"),
        status=attr(obj, "status"),
    )


def _tier(obj: Any) -> PriceTier:
    unit = to_decimal(attr(obj, "unit_amount_decimal"))
    if unit is None:
        unit = to_decimal(attr(obj, "unit_amount")) or Decimal(0)
    flat = to_decimal(attr(obj, "flat_amount_decimal"))
    if flat is None:
        flat = to_decimal(attr(obj, "flat_amount")) or Decimal(0)
    up_to = attr(obj, "up_to")
    return PriceTier(
        up_to=None if up_to in (None, "inf") else int(up_to),
        unit_amount_decimal=unit,
        flat_amount=int(flat),
    )


def price(obj: Any) -> StripePrice:
    tiered = attr(obj, "billing_scheme") == "tiered"
    tiers_raw = attr(obj, "tiers")
    if tiered and tiers_raw is None:
        raise ValueError(f"price {obj.id}: tiers were not expanded (expand=['tiers'])")
    unit: Decimal | None = None
    if not tiered:
        unit = to_decimal(attr(obj, "unit_amount_decimal"))
        if unit is None:
            unit = to_decimal(attr(obj, "unit_amount"))
    terms = PriceTerms(
        currency=str(attr(obj, "currency")),
        interval=str(attr(obj, "recurring", "interval")),
        usage_type=str(attr(obj, "recurring", "usage_type")),
        stripe_meter_id=ref_id(attr(obj, "recurring", "meter")),
        unit_amount_decimal=unit,
        tiers=tuple(_tier(t) for t in tiers_raw) if tiered and tiers_raw else (),
    )
    return StripePrice(
        stripe_price_id=str(obj.id),
        stripe_product_id=str(ref_id(attr(obj, "product"))),
        active=bool(attr(obj, "active")),
        lookup_key=attr(obj, "lookup_key"),
        terms=terms,
        metadata=metadata(obj),
    )


def subscription_item(obj: Any) -> StripeSubscriptionItem:
    quantity = attr(obj, "quantity")
    return StripeSubscriptionItem(
        stripe_subscription_item_id=str(attr(obj, "id")),
        stripe_price_id=ref_id(attr(obj, "price")),
        quantity=None if quantity is None else int(quantity),
        current_period_start_at=from_unix(attr(obj, "current_period_start")),
        current_period_end_at=from_unix(attr(obj, "current_period_end")),
        metadata=metadata(obj),
    )


def subscription(obj: Any, items: list[Any] | None = None) -> StripeSubscription:
    raw_items = items if items is not None else list_data(attr(obj, "items"))
    return StripeSubscription(
        stripe_subscription_id=str(attr(obj, "id")),
        stripe_customer_id=str(ref_id(attr(obj, "customer"))),
        status=str(attr(obj, "status")),
        billing_mode=attr(obj, "billing_mode", "type"),
        created_at=from_unix(attr(obj, "created")),
        items=tuple(subscription_item(i) for i in raw_items),
        metadata=metadata(obj),
        cancel_at=from_unix(attr(obj, "cancel_at")),
        canceled_at=from_unix(attr(obj, "canceled_at")),
        ended_at=from_unix(attr(obj, "ended_at")),
        cancel_at_period_end=bool(attr(obj, "cancel_at_period_end")),
        stripe_latest_invoice_id=ref_id(attr(obj, "latest_invoice")),
    )


def meter_event(obj: Any) -> StripeMeterEvent:
    payload = attr(obj, "payload")
    data = (
        {} if payload is None else (payload if isinstance(payload, Mapping) else payload.to_dict())
    )
    return StripeMeterEvent(
        event_name=str(attr(obj, "event_name")),
        identifier=str(attr(obj, "identifier")),
        timestamp_at=from_unix(attr(obj, "timestamp")),
        payload=MappingProxyType({str(k): str(v) for k, v in data.items()}),
    )


def meter_event_summary(obj: Any) -> StripeMeterEventSummary:
    start, end = from_unix(attr(obj, "start_time")), from_unix(attr(obj, "end_time"))
    assert start is not None
    assert end is not None
    return StripeMeterEventSummary(
        stripe_meter_id=str(attr(obj, "meter")),
        aggregated_value=to_decimal(attr(obj, "aggregated_value")) or Decimal(0),
        start_at=start,
        end_at=end,
    )


def invoice_item(obj: Any) -> StripeInvoiceItem:
    return StripeInvoiceItem(
        stripe_invoice_item_id=str(obj.id),
        stripe_customer_id=str(ref_id(attr(obj, "customer"))),
        amount=int(attr(obj, "amount") or 0),
        currency=str(attr(obj, "currency")),
        description=attr(obj, "description"),
        stripe_invoice_id=ref_id(attr(obj, "invoice")),
        metadata=metadata(obj),
    )


def invoice_line(obj: Any) -> StripeInvoiceLine:
    parent = attr(obj, "parent")
    sub_details = attr(parent, "subscription_item_details")
    item_details = attr(parent, "invoice_item_details")
    proration = bool(attr(sub_details, "proration") or attr(item_details, "proration"))
    invoice_item_id = ref_id(attr(sub_details, "invoice_item")) or ref_id(
        attr(item_details, "invoice_item")
    )
    return StripeInvoiceLine(
        stripe_invoice_line_id=str(attr(obj, "id")),
        amount=int(attr(obj, "amount") or 0),
        currency=str(attr(obj, "currency")),
        description=attr(obj, "description"),
        quantity_decimal=to_decimal(attr(obj, "quantity_decimal"))
        if attr(obj, "quantity_decimal") is not None
        else to_decimal(attr(obj, "quantity")),
        stripe_price_id=ref_id(attr(obj, "pricing", "price_details", "price")),
        proration=proration,
        stripe_subscription_item_id=ref_id(attr(sub_details, "subscription_item")),
        stripe_invoice_item_id=invoice_item_id,
        period_start_at=from_unix(attr(obj, "period", "start")),
        period_end_at=from_unix(attr(obj, "period", "end")),
        metadata=metadata(obj),
    )


def invoice(obj: Any, lines: list[Any]) -> StripeInvoice:
    return StripeInvoice(
        stripe_invoice_id=attr(obj, "id"),
        stripe_customer_id=str(ref_id(attr(obj, "customer"))),
        stripe_subscription_id=ref_id(attr(obj, "parent", "subscription_details", "subscription")),
        status=attr(obj, "status"),
        billing_reason=attr(obj, "billing_reason"),
        currency=str(attr(obj, "currency")),
        subtotal_amount=int(attr(obj, "subtotal") or 0),
        total_amount=int(attr(obj, "total") or 0),
        amount_due=int(attr(obj, "amount_due") or 0),
        auto_advance=attr(obj, "auto_advance"),
        period_start_at=from_unix(attr(obj, "period_start")),
        period_end_at=from_unix(attr(obj, "period_end")),
        created_at=from_unix(attr(obj, "created")),
        lines=tuple(invoice_line(line) for line in lines),
        metadata=metadata(obj),
    )

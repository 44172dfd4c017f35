"""The bodies and options of Stripe requests: idempotency keys checked, prices and items encoded."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from billing.core.money import format_decimal
from billing.stripe_gateway.records import PriceSpec, SubscriptionItemSpec

if TYPE_CHECKING:
    from stripe.params import PriceCreateParams

MAX_IDEMPOTENCY_KEY_LENGTH = 255


def check_idempotency_key(key: str) -> str:
    """Idempotency keys are ours, deterministic, non-empty and at most 255 characters."""
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise ValueError(f"idempotency key must be 1..255 characters, got {len(key)}: {key[:40]!r}")
    return key


def item_params(item: SubscriptionItemSpec) -> dict[str, Any]:
    params: dict[str, Any] = {"price": item.stripe_price_id}
    if item.quantity is not None:
        params["quantity"] = item.quantity
    if item.metadata:
        params["metadata"] = dict(item.metadata)
    return params


def price_create_params(spec: PriceSpec) -> PriceCreateParams:
    """The `prices.create` body for a spec; Decimals are sent fixed-point, never as 1E-7."""
    terms = spec.terms
    recurring: dict[str, Any] = {"interval": terms.interval, "usage_type": terms.usage_type}
    if terms.stripe_meter_id:
        recurring["meter"] = terms.stripe_meter_id
    params: dict[str, Any] = {
        "currency": terms.currency,
        "product": spec.stripe_product_id,
        "recurring": recurring,
        "lookup_key": spec.lookup_key,
        "nickname": spec.nickname,
        "metadata": dict(spec.metadata),
        "expand": ["tiers"],  # tiers are only rendered when expanded, even on create
    }
    if spec.transfer_lookup_key:
        params["transfer_lookup_key"] = True
    if terms.tiers:
        params["billing_scheme"] = "tiered"
        params["tiers_mode"] = "graduated"
        params["tiers"] = [
            _tier_params(t.up_to, t.unit_amount_decimal, t.flat_amount) for t in terms.tiers
        ]
    else:
        assert terms.unit_amount_decimal is not None, "per-unit price needs unit_amount_decimal"
        params["billing_scheme"] = "per_unit"
        unit = terms.unit_amount_decimal
        if unit == unit.to_integral_value():
            params["unit_amount"] = int(unit)
        else:
            params["unit_amount_decimal"] = format_decimal(unit)
    return params  # type: ignore[return-value]


def _tier_params(up_to: int | None, unit: Decimal, flat_amount: int) -> dict[str, Any]:
    tier: dict[str, Any] = {"up_to": "inf" if up_to is None else up_to}
    if unit == unit.to_integral_value():
        tier["unit_amount"] = int(unit)
    else:
        tier["unit_amount_decimal"] = format_decimal(unit)
    if flat_amount:
        tier["flat_amount"] = flat_amount
    return tier

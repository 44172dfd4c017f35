"""Price arithmetic in cents: per-unit and tiered amounts, prorations, and the rounding rule.

Rounding (assumption; Stripe documents "rounded to the nearest cent" without the tie rule): an
amount is computed exactly with ``Decimal`` over the whole line (all tiers of a graduated
price, or one proration line) and rounded once, half up, to an integer cent.  So
1234 min × 0.8¢ = 987.2¢ → 987¢ and 0.5¢ → 1¢.  Credit prorations round their magnitude half up
and are then negated, so a credit and a debit of the same size cancel exactly.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any


def round_cents(amount: Decimal) -> int:
    magnitude = abs(amount).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(magnitude) if amount >= 0 else -int(magnitude)


def unit_decimal(price: dict[str, Any]) -> Decimal:
    raw = price.get("unit_amount_decimal")
    return Decimal(str(raw)) if raw is not None else Decimal(0)


def tier_unit(tier: dict[str, Any]) -> Decimal:
    raw = tier.get("unit_amount_decimal")
    return Decimal(str(raw)) if raw is not None else Decimal(0)


def tier_flat(tier: dict[str, Any]) -> Decimal:
    raw = tier.get("flat_amount_decimal")
    return Decimal(str(raw)) if raw is not None else Decimal(0)


def exact_amount(price: dict[str, Any], quantity: Decimal) -> Decimal:
    """Unrounded amount in cents for ``quantity`` units of ``price``."""
    if price.get("billing_scheme") != "tiered":
        return unit_decimal(price) * quantity
    tiers = price.get("_tiers") or []
    if price.get("tiers_mode") == "volume":
        for tier in tiers:
            up_to = tier["up_to"]
            if up_to is None or quantity <= up_to:
                flat = tier_flat(tier) if quantity > 0 else Decimal(0)
                return tier_unit(tier) * quantity + flat
        return Decimal(0)
    total = Decimal(0)
    lower = Decimal(0)
    for tier in tiers:
        if quantity <= lower:
            break
        up_to = tier["up_to"]
        upper = quantity if up_to is None else min(quantity, Decimal(up_to))
        total += tier_unit(tier) * (upper - lower) + tier_flat(tier)
        if up_to is None:
            break
        lower = Decimal(up_to)
    return total


def line_amount(price: dict[str, Any], quantity: Decimal) -> int:
    return round_cents(exact_amount(price, quantity))


def prorated(amount: Decimal, remaining_seconds: int, period_seconds: int) -> Decimal:
    if period_seconds <= 0:
        return Decimal(0)
    return amount * Decimal(remaining_seconds) / Decimal(period_seconds)

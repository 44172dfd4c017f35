"""The JSON object of one quote, the same for `billing quote --json` and `POST /api/quote`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from billing.core.meters import Interval
from billing.core.money import format_decimal
from billing.pricing.charge import Charge, ChargeLine


def quantity_json(value: Decimal) -> int | str:
    """Whole quantities as JSON integers; fractional ones as exact decimal strings."""
    if value == value.to_integral_value():
        return int(value)
    return format_decimal(value)


def quote_json(book_name: str, plan: str, interval: Interval, charge: Charge) -> dict[str, Any]:
    """Amounts in minor units; unit prices as decimal strings of minor units (never floats)."""
    return {
        "book": book_name,
        "plan": plan,
        "interval": interval.value,
        "currency": charge.currency,
        "lines": [line_json(line) for line in charge.lines],
        "total": charge.total_amount,
    }


def line_json(line: ChargeLine) -> dict[str, Any]:
    return {
        "code": line.code,
        "quantity": quantity_json(line.quantity),
        "included": quantity_json(line.included),
        "billable": quantity_json(line.billable),
        "unit_amount_decimal": format_decimal(line.unit_amount_decimal),
        "amount": line.amount,
    }

"""How explanations write numbers, money, instants and durations for a person reading aloud (pure).

Amounts are dollars and cents (`$59.83`); an unrounded amount or a sub-cent unit price keeps the
digits that matter (`$0.0001`, `$1.872`) and never more than a hundredth of a cent (`≈ $18.9831`);
instants are UTC to the minute (`Jan 21 2027 14:05 UTC`); durations are days, hours and minutes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from billing.core.money import decimal_places, format_minor_units, format_unit_amount
from billing.core.periods import parse_instant

# An unrounded amount is shown to a hundredth of a cent at most: more digits help nobody.
EXACT_PLACES = 2
_HUNDREDTH = Decimal("0.01")


def money(amount: int | None, currency: str) -> str:
    """Integer minor units as money: 5983 usd -> `$59.83`; None -> `—`."""
    return "—" if amount is None else format_minor_units(amount, currency)


def unit_price(amount_decimal: Decimal, currency: str) -> str:
    """A unit price in minor units with every digit it has: 0.01 usd -> `$0.0001`."""
    return format_unit_amount(amount_decimal, currency)


def exact_money(amount_decimal: Decimal, currency: str) -> str:
    """An unrounded amount in minor units: `$1.872`, or `≈ $18.9831` past a hundredth of a cent."""
    if decimal_places(amount_decimal) <= EXACT_PLACES:
        return format_unit_amount(amount_decimal, currency)
    rounded = amount_decimal.quantize(_HUNDREDTH, rounding=ROUND_HALF_UP)
    return f"≈ {format_unit_amount(rounded, currency)}"


def quantity(value: Decimal | int | str | None) -> str:
    """A quantity with thousands separators and no trailing zeros: 1800000 -> `1,800,000`."""
    number = to_decimal(value)
    if number is None:
        return "—"
    text = format(number.normalize(), "f")
    whole, _, fraction = text.partition(".")
    sign = "-" if whole.startswith("-") else ""
    grouped = f"{int(whole.lstrip('-') or 0):,}"
    return f"{sign}{grouped}.{fraction}" if fraction else f"{sign}{grouped}"


def counted(value: Decimal | int | str | None, unit: str) -> str:
    """`700 messages`, `1 message`: the unit pluralised by adding `s` unless it is one."""
    number = to_decimal(value)
    plural = unit if number == 1 else f"{unit}s"
    return f"{quantity(value)} {plural}"


def to_decimal(value: Any) -> Decimal | None:
    """A trace's number (stored as text or int) as a Decimal; None when it holds none."""
    if value is None or isinstance(value, bool | float):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def instant(value: str | datetime | None) -> str:
    """`Jan 21 2027 14:05 UTC` (seconds shown only when there are some)."""
    at = _parse(value)
    if at is None:
        return "—"
    text = f"{at:%b} {at.day} {at.year} {at:%H:%M}"
    if at.second:
        text += f":{at.second:02d}"
    return f"{text} UTC"


def day(value: str | datetime | None) -> str:
    at = _parse(value)
    return "—" if at is None else f"{at:%b} {at.day} {at.year}"


def _parse(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return parse_instant(value)
    except ValueError:
        return None


def duration(seconds: int) -> str:
    """`40 d 9 h 55 m`; whole days alone as `365 d`; seconds only when there are some."""
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if not (hours or minutes or secs):
        return f"{days} d"
    parts = [f"{days} d"] if days else []
    parts += [f"{hours} h", f"{minutes} m"]
    if secs:
        parts.append(f"{secs} s")
    return " ".join(parts)


def readable_trace(value: Any, indent: int = 0) -> str:
    """A stored trace as indented `key: value` lines: no braces, quotes or `\\u2192` escapes."""
    pad = "  " * indent
    if isinstance(value, Mapping):
        lines = []
        for key, item in value.items():
            if isinstance(item, Mapping | list) and item:
                lines.append(f"{pad}{key}:")
                lines.append(readable_trace(item, indent + 1))
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
        return "\n".join(lines)
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, Mapping | list) and item:
                body = readable_trace(item, indent + 1).lstrip()
                lines.append(f"{pad}- {body}")
            else:
                lines.append(f"{pad}- {_scalar(item)}")
        return "\n".join(lines)
    return f"{pad}{_scalar(value)}"


def _scalar(value: Any) -> str:
    if value is None or (isinstance(value, Mapping | list) and not value):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)

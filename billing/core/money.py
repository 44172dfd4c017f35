"""Money arithmetic: integer minor units, Decimal sub-cent prices, and the one rounding rule."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

# Enough precision that dividing by a package size (3,600 seconds per hour) and rounding to a
# cent can never be flipped by the division's own rounding: exact halves are terminating
# decimals, and anything else is at least 1/denominator away from a half.
_CONTEXT = Context(prec=60, rounding=ROUND_HALF_UP)
_ONE = Decimal(1)
# Stripe accepts at most 12 decimal places of the minor unit in `unit_amount_decimal`.
MAX_DECIMAL_PLACES = 12


def round_line_amount(exact_amount: Decimal) -> int:
    """Round an exact line amount in minor units to an integer, half up (away from zero).

    This is the project's only rounding rule: every invoice line is rounded once, here, and
    totals are sums of rounded lines.
    """
    return int(exact_amount.quantize(_ONE, rounding=ROUND_HALF_UP, context=_CONTEXT))


def line_amount(quantity: int | Decimal, unit_amount_decimal: Decimal, per: int = 1) -> Decimal:
    """Exact (unrounded) minor units for `quantity` at `unit_amount_decimal` per `per` units."""
    product = _CONTEXT.multiply(Decimal(quantity), unit_amount_decimal)
    return product if per == 1 else _CONTEXT.divide(product, Decimal(per))


def parse_decimal(value: object) -> Decimal:
    """Parse a price from a string or integer without ever passing through float.

    Raises ValueError with the offending value; floats are refused because they cannot carry
    prices exactly (0.1 + 0.2 != 0.3).
    """
    if isinstance(value, bool | float):
        raise ValueError(f"{value!r} must be written as a string or an integer, not a float")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | str):
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
    else:
        raise ValueError(f"{value!r} is not a decimal number")
    if not result.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return result


def decimal_places(value: Decimal) -> int:
    """Number of digits after the decimal point once trailing zeros go (0 for integers).

    Read from the digits themselves, not through normalize(), which a context's exponent
    limits would round: 1E-999999999 has 999,999,999 places, not 0."""
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite values only; parse_decimal guarantees it
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    if trailing_zeros == len(digits):  # zero
        return 0
    return max(0, -(exponent + trailing_zeros))


def format_decimal(value: Decimal) -> str:
    """Fixed-point string without exponent or trailing zeros: Decimal('1E-7') -> '0.0000001'.

    Stripe's form encoding uses str(), which would send scientific notation.
    """
    text = format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def format_minor_units(amount: int, currency: str) -> str:
    """Human-readable amount for tables: 9000 usd -> '$90.00', -5 usd -> '-$0.05'."""
    units, cents = divmod(abs(amount), 100)
    return _with_symbol(amount < 0, f"{units:,}.{cents:02d}", currency)


def format_unit_amount(amount_decimal: Decimal, currency: str) -> str:
    """A sub-cent price or an unrounded amount in major units, every digit kept:
    Decimal('0.8') usd -> '$0.008', Decimal('720.8') -> '$7.208', Decimal('900') -> '$9.00'."""
    units, _, fraction = format_decimal(abs(amount_decimal).scaleb(-2)).partition(".")
    body = f"{int(units):,}.{fraction.ljust(2, '0')}"
    return _with_symbol(amount_decimal < 0, body, currency)


def _with_symbol(negative: bool, body: str, currency: str) -> str:
    symbol = {"usd": "$", "eur": "€", "gbp": "£"}.get(currency.lower())
    sign = "-" if negative else ""
    return f"{sign}{symbol}{body}" if symbol else f"{sign}{body} {currency.upper()}"

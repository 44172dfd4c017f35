"""How prices and charge lines read in words and numbers: unit prices, names and formulas.

The pricing page and the formula document both explain amounts with these functions, and
every number they show is one the engine (billing.pricing.charge) computed or the book holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from billing.core.components import MINIMUM, SEATS
from billing.core.meters import Meter
from billing.core.money import format_minor_units, format_unit_amount
from billing.pricing.book import MeterDefinition, MeterPrice, PriceBook, Terms
from billing.pricing.charge import Charge, ChargeLine, TierUse

# Decimal places of a cent an unrounded amount is shown with (Stripe prices carry up to 12).
EXACT_PLACES = 4
TIMES = "×"
MINUS = "−"


def quantity_text(quantity: Decimal | int) -> str:
    """`1,600,000`, `3,600.5`: thousands separated, no exponent, no trailing zeros."""
    value = Decimal(quantity)
    if value == value.to_integral_value():
        return f"{int(value):,}"
    return f"{value.normalize():,f}"


def units_text(definition: MeterDefinition) -> str:
    """The meter's unit in the plural, as a formula names it: `messages`, `resource-hours`."""
    return f"{definition.unit}s"


def unit_price_text(
    price: MeterPrice, unit_amount_decimal: Decimal, definition: MeterDefinition, currency: str
) -> str:
    """`$0.008 per minute`, or `$0.13 per 3,600 seconds` for a packaged price."""
    amount = format_unit_amount(unit_amount_decimal, currency)
    if price.per == 1:
        return f"{amount} per {definition.unit}"
    return f"{amount} per {quantity_text(price.per)} {units_text(definition)}"


def is_simple(price: MeterPrice) -> bool:
    """An allowance then one unit price: `max(0, total − included) × unit price` says it all."""
    paid = price.tiers[1:] if price.included else price.tiers
    return len(paid) == 1 and paid[0].up_to is None and paid[0].flat_amount == 0


def meter_formula(price: MeterPrice, definition: MeterDefinition, currency: str) -> str:
    """The formula of a meter with the book's numbers, the quantity left as the unit's name."""
    units = units_text(definition)
    if is_simple(price):
        return _simple_formula(price, units, currency)
    parts = []
    lower = 0
    for tier in price.tiers:
        rate = unit_price_text(price, tier.unit_amount_decimal, definition, currency)
        if tier.flat_amount:
            rate += f" + {format_minor_units(tier.flat_amount, currency)} flat"
        if tier.up_to is None:
            parts.append(f"above {quantity_text(lower)}: {rate}")
        else:
            parts.append(f"{quantity_text(lower)} to {quantity_text(tier.up_to)}: {rate}")
            lower = tier.up_to
    return "graduated, each unit at its tier's price — " + "; ".join(parts)


def rounded_text(exact_amount: Decimal, amount: int, currency: str) -> str:
    """`$6.00`, or `$7.208 → $7.21` when the line's one rounding (half up) changed it; an
    unrounded amount with more than EXACT_PLACES decimals of a cent is cut short with `…`."""
    rounded = format_minor_units(amount, currency)
    if exact_amount == amount:
        return rounded
    shown = exact_amount.quantize(Decimal(1).scaleb(-EXACT_PLACES), rounding=ROUND_DOWN)
    ellipsis = "…" if shown != exact_amount else ""
    return f"{format_unit_amount(shown, currency)}{ellipsis} → {rounded}"


def line_formula(line: ChargeLine, terms: Terms, book: PriceBook) -> str:
    """The formula of one quote line with its numbers, ending with the line's amount."""
    currency = terms.currency
    if line.code == SEATS:
        seats = quantity_text(line.quantity)
        unit = format_unit_amount(line.unit_amount_decimal, currency)
        total = format_minor_units(line.amount, currency)
        return f"{seats} seats {TIMES} {unit} per seat per {terms.interval} = {total}"
    if line.code == MINIMUM:
        minimum = format_minor_units(terms.minimum_amount, currency)
        usage = format_minor_units(terms.minimum_amount - line.amount, currency)
        top_up = format_minor_units(line.amount, currency)
        return f"max(0, {minimum} minimum {MINUS} {usage} usage) = {top_up}"
    price = terms.meters[Meter(line.code)]
    exact = sum((use.exact_amount for use in line.tiers), Decimal(0))
    result = rounded_text(exact, line.amount, currency)
    if is_simple(price):
        return f"{_simple_formula(price, quantity_text(line.quantity), currency)} = {result}"
    definition = book.meter_definitions[price.meter]
    steps = " + ".join(_tier_text(use, price, definition, currency) for use in line.tiers)
    return f"{steps or '0'} = {result}"


def _simple_formula(price: MeterPrice, quantity: str, currency: str) -> str:
    """`max(0, QUANTITY − included) × unit price`, just `QUANTITY × unit price` without an
    allowance, and `÷ per` for a packaged price."""
    unit = format_unit_amount(price.tiers[-1].unit_amount_decimal, currency)
    per = f" ÷ {quantity_text(price.per)}" if price.per != 1 else ""
    if not price.included:
        return f"{quantity} {TIMES} {unit}{per}"
    return f"max(0, {quantity} {MINUS} {quantity_text(price.included)}) {TIMES} {unit}{per}"


def _tier_text(use: TierUse, price: MeterPrice, definition: MeterDefinition, currency: str) -> str:
    unit = format_unit_amount(use.unit_amount_decimal, currency)
    per = f" ÷ {quantity_text(price.per)}" if price.per != 1 else ""
    flat = f" + {format_minor_units(use.flat_amount, currency)}" if use.flat_amount else ""
    return f"{quantity_text(use.quantity)} {units_text(definition)} {TIMES} {unit}{per}{flat}"


@dataclass(frozen=True)
class QuoteRow:
    """One quote line as a reader sees it; `amount` stays in minor units for machines."""

    code: str
    name: str
    quantity: str
    included: str
    billable: str
    unit_price: str
    amount: int
    amount_text: str
    formula: str


def quote_rows(book: PriceBook, terms: Terms, charge: Charge) -> tuple[QuoteRow, ...]:
    """Each line of a quote with its unit price and its formula (the page and this document)."""
    return tuple(
        QuoteRow(
            code=line.code,
            name=line_name(book, line.code),
            quantity=quantity_text(line.quantity),
            included=quantity_text(line.included),
            billable=quantity_text(line.billable),
            unit_price=line_unit_text(book, terms, line.code, line.unit_amount_decimal),
            amount=line.amount,
            amount_text=format_minor_units(line.amount, book.currency),
            formula=line_formula(line, terms, book),
        )
        for line in charge.lines
    )


def line_name(book: PriceBook, code: str) -> str:
    if code == SEATS:
        return "Seats"
    if code == MINIMUM:
        return "Minimum commitment"
    return book.meter_definitions[Meter(code)].display_name


def line_unit_text(book: PriceBook, terms: Terms, code: str, unit_amount_decimal: Decimal) -> str:
    if code == SEATS:
        price = format_unit_amount(unit_amount_decimal, book.currency)
        return f"{price} per seat per {terms.interval}"
    if code == MINIMUM:
        return ""
    meter = Meter(code)
    return unit_price_text(
        terms.meters[meter], unit_amount_decimal, book.meter_definitions[meter], book.currency
    )

"""The pricing engine: the lines and total of one monthly charge under a set of terms (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from billing.core.components import MINIMUM, SEATS
from billing.core.meters import Meter
from billing.core.money import line_amount, round_line_amount
from billing.pricing.book import MeterPrice, Terms, UnknownTermsError

# Stripe refuses meter values with more than 15 significant digits.
METER_VALUE_DIGITS = 15


def meter_value(quantity: Decimal, per: int) -> Decimal:
    """What Stripe's meter receives and its invoice shows for a ledger quantity: the quantity
    in the price's unit (`per` base units: 803,520 seconds at `per` = 3,600 is 223.2 hours),
    exact when possible, else rounded half up to 15 significant digits (at most 12 places)."""
    value = line_amount(quantity, Decimal(1), per)
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    whole_digits = max(1, value.adjusted() + 1)
    places = max(0, min(12, METER_VALUE_DIGITS - whole_digits))
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP).normalize()


def ledger_quantity(value: Decimal, per: int) -> Decimal:
    """The ledger quantity (base units) of a meter value Stripe shows (inverse of meter_value,
    exact for values that were exact)."""
    return value * per


@dataclass(frozen=True)
class TierUse:
    """How much of one tier a quantity used: the explanation of a meter line's amount."""

    up_to: int | None
    quantity: Decimal
    unit_amount_decimal: Decimal
    flat_amount: int
    exact_amount: Decimal


@dataclass(frozen=True)
class ChargeLine:
    """One line of a charge. `amount` is rounded once (billing.core.money); the rest explains it."""

    code: str  # "seats", a meter code, or "minimum"
    quantity: Decimal
    included: Decimal
    billable: Decimal
    unit_amount_decimal: Decimal  # marginal price of the last billable unit, per `per` units
    amount: int
    per: int = 1
    tiers: tuple[TierUse, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Charge:
    currency: str
    lines: tuple[ChargeLine, ...]

    @property
    def total_amount(self) -> int:
        return sum(line.amount for line in self.lines)

    def line(self, code: str) -> ChargeLine | None:
        return next((line for line in self.lines if line.code == code), None)


def price_meter(price: MeterPrice, quantity: Decimal) -> ChargeLine:
    """Price one meter's period total through its graduated tiers."""
    if quantity < 0:
        raise ValueError(f"{price.meter.value}: quantity must not be negative, got {quantity}")
    uses: list[TierUse] = []
    lower = Decimal(0)
    exact_total = Decimal(0)
    # The rate shown is that of the tier holding the last unit, or, while the quantity is
    # still inside the free allowance, the first paid tier's rate (what the next unit costs).
    paid = [tier.unit_amount_decimal for tier in price.tiers if tier.unit_amount_decimal > 0]
    marginal = paid[0] if paid else Decimal(0)
    for tier in price.tiers:
        upper = Decimal(tier.up_to) if tier.up_to is not None else None
        in_tier = (quantity if upper is None else min(quantity, upper)) - lower
        if in_tier <= 0:
            break
        exact = line_amount(in_tier, tier.unit_amount_decimal, price.per) + tier.flat_amount
        uses.append(TierUse(tier.up_to, in_tier, tier.unit_amount_decimal, tier.flat_amount, exact))
        exact_total += exact
        if tier.unit_amount_decimal > 0 or tier.flat_amount:
            marginal = tier.unit_amount_decimal
        if upper is None:
            break
        lower = upper
    included = min(quantity, Decimal(price.included))
    return ChargeLine(
        code=price.meter.value,
        quantity=quantity,
        included=Decimal(price.included),
        billable=quantity - included,
        unit_amount_decimal=marginal,
        amount=round_line_amount(exact_total),
        per=price.per,
        tiers=tuple(uses),
    )


def seat_line(terms: Terms, seat_count: int) -> ChargeLine:
    """The full-term seat charge (no proration): seats × price per seat per interval."""
    if terms.seat_unit_amount is None:
        raise UnknownTermsError(f"plan {terms.plan!r} in book {terms.book!r} has no seats")
    if seat_count < 0:
        raise ValueError(f"seats must not be negative, got {seat_count}")
    unit = Decimal(terms.seat_unit_amount)
    count = Decimal(seat_count)
    return ChargeLine(
        code=SEATS,
        quantity=count,
        included=Decimal(0),
        billable=count,
        unit_amount_decimal=unit,
        amount=round_line_amount(count * unit),
        description=f"{seat_count} seat(s) × {terms.seat_unit_amount} per {terms.interval}",
    )


def minimum_line(terms: Terms, usage_amount: int) -> ChargeLine | None:
    """The minimum-commitment top-up when the month's usage charge is below the minimum."""
    top_up = terms.minimum_amount - usage_amount
    if top_up <= 0:
        return None
    return ChargeLine(
        code=MINIMUM,
        quantity=Decimal(1),
        included=Decimal(0),
        billable=Decimal(1),
        unit_amount_decimal=Decimal(top_up),
        amount=top_up,
        description=f"minimum commitment {terms.minimum_amount} less usage {usage_amount}",
    )


def usage_lines(terms: Terms, usage: Mapping[Meter, Decimal]) -> tuple[ChargeLine, ...]:
    """One line per meter of the terms (zero when unused), then the minimum top-up if due."""
    unknown = [meter for meter in usage if meter not in terms.meters]
    if unknown:
        known = ", ".join(m.value for m in terms.meters)
        raise UnknownTermsError(
            f"meter {unknown[0].value!r} is not billed on plan {terms.plan!r} "
            f"of book {terms.book!r} (meters: {known})"
        )
    lines = [
        price_meter(price, usage.get(meter, Decimal(0))) for meter, price in terms.meters.items()
    ]
    top_up = minimum_line(terms, sum(line.amount for line in lines))
    return (*lines, top_up) if top_up else tuple(lines)


def quote(terms: Terms, seat_count: int | None, usage: Mapping[Meter, Decimal]) -> Charge:
    """The calculator: full-term seats (when the plan has seats) plus one month of usage."""
    lines: list[ChargeLine] = []
    if terms.has_seats:
        lines.append(seat_line(terms, seat_count or 0))
    elif seat_count:
        raise UnknownTermsError(f"plan {terms.plan!r} in book {terms.book!r} has no seats")
    lines.extend(usage_lines(terms, usage))
    return Charge(currency=terms.currency, lines=tuple(lines))

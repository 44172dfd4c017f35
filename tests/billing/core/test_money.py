"""The one rounding rule and decimal handling (billing.core.money)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.core.money import (
    decimal_places,
    format_decimal,
    format_minor_units,
    format_unit_amount,
    line_amount,
    parse_decimal,
    round_line_amount,
)


@pytest.mark.parametrize(
    ("exact", "cents"),
    [
        ("0", 0),
        ("0.4999", 0),
        ("0.5", 1),  # half up
        ("1.5", 2),
        ("2.5", 3),  # not banker's rounding
        ("987.2", 987),
        ("2901.6", 2902),
        ("-0.5", -1),  # away from zero for credits
        ("-1.4", -1),
    ],
)
def test_round_line_amount_is_half_up(exact: str, cents: int) -> None:
    assert round_line_amount(Decimal(exact)) == cents


@pytest.mark.parametrize(
    ("quantity", "unit", "per", "exact"),
    [
        (30, "2", 1, "60"),
        (20, "0.8", 1, "16.0"),
        (100_000, "0.01", 1, "1000.00"),
        (803_520, "13", 3600, "2901.6"),
    ],
)
def test_line_amount_is_exact(quantity: int, unit: str, per: int, exact: str) -> None:
    assert line_amount(quantity, Decimal(unit), per) == Decimal(exact)


def test_line_amount_keeps_non_terminating_quotients_precise() -> None:
    # One second at 13 cents per hour: 0.0036111… cents, far beyond Stripe's 12 places.
    assert str(line_amount(1, Decimal(13), 3600)).startswith("0.00361111111111111111111")


def test_division_by_package_size_rounds_exact_halves_up() -> None:
    # 1,800 s at 1 cent per hour is exactly half a cent.
    assert round_line_amount(line_amount(1800, Decimal(1), 3600)) == 1
    assert round_line_amount(line_amount(1799, Decimal(1), 3600)) == 0


@pytest.mark.parametrize("value", [0.1, 1.0, True, None, "abc", "NaN", "Infinity", [1]])
def test_parse_decimal_refuses_floats_and_non_numbers(value: object) -> None:
    with pytest.raises(ValueError, match=repr(value)[:3]):
        parse_decimal(value)


@pytest.mark.parametrize(("value", "expected"), [("2", Decimal(2)), (7, Decimal(7))])
def test_parse_decimal_accepts_strings_and_ints(value: object, expected: Decimal) -> None:
    assert parse_decimal(value) == expected


@pytest.mark.parametrize(
    ("value", "text", "places"),
    [("1E-7", "0.0000001", 7), ("0.80", "0.8", 1), ("900", "900", 0), ("1E+3", "1000", 0)],
)
def test_format_decimal_never_uses_scientific_notation(value: str, text: str, places: int) -> None:
    assert format_decimal(Decimal(value)) == text
    assert decimal_places(Decimal(value)) == places


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (9000, "usd", "$90.00"),
        (-5, "usd", "-$0.05"),
        (123456, "usd", "$1,234.56"),
        (100, "chf", "1.00 CHF"),
    ],
)
def test_format_minor_units(amount: int, currency: str, text: str) -> None:
    assert format_minor_units(amount, currency) == text


@pytest.mark.parametrize(
    ("amount_decimal", "currency", "text"),
    [
        ("0.8", "usd", "$0.008"),  # a sub-cent unit price keeps every digit
        ("0.01", "usd", "$0.0001"),
        ("2", "usd", "$0.02"),
        ("900", "usd", "$9.00"),
        ("720.8", "usd", "$7.208"),  # an unrounded line amount
        ("123456789.5", "usd", "$1,234,567.895"),
        ("1E+3", "usd", "$10.00"),
        ("-5", "usd", "-$0.05"),
        ("13", "chf", "0.13 CHF"),
    ],
)
def test_format_unit_amount(amount_decimal: str, currency: str, text: str) -> None:
    assert format_unit_amount(Decimal(amount_decimal), currency) == text


@pytest.mark.parametrize(
    ("value", "places"),
    [("1E-999999999", 999_999_999), ("0E-100", 0), ("1.5000", 1), ("1E+3", 0), ("-0.25", 2)],
)
def test_decimal_places_beyond_the_contexts_exponent_limits(value: str, places: int) -> None:
    assert decimal_places(Decimal(value)) == places

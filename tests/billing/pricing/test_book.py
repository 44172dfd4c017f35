"""Price book loading: the bundled books, and every validation error naming file, key, problem."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from billing.core.meters import Interval, Meter, Quota, QuotaMode
from billing.pricing.book import (
    PriceBookError,
    SeatDecrease,
    SeatIncrease,
    UnknownTermsError,
    load_book,
)
from billing.pricing.charge import quote

VALID = """
name = "test"
currency = "usd"
default_plan = "basic"

[meters.copilot_messages]
display_name = "Messages"
unit = "message"

[plans.basic]
display_name = "Basic"
seat_unit_amount = { year = 900 }

[plans.basic.meters.copilot_messages]
included = 10
unit_amount_decimal = "2"

[plans.basic.quotas]
environments = 3
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "book.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_base_book_loads(tmp_path: Path) -> None:
    book = load_book(write(tmp_path, VALID))
    terms = book.terms("basic")
    assert terms.interval is Interval.YEAR
    assert terms.seat_unit_amount == 900
    assert terms.meters[Meter.COPILOT_MESSAGES].included == 10
    assert terms.quotas[Quota.ENVIRONMENTS].limit == 3
    assert terms.quotas[Quota.ENVIRONMENTS].mode is QuotaMode.HARD
    assert book.seat_policy.increase is SeatIncrease.PRORATE
    assert book.seat_policy.decrease is SeatDecrease.AT_RENEWAL


def test_bundled_books_expose_the_specified_plans() -> None:
    assert set(load_book("devtools").plans) == {"free", "team", "enterprise"}
    assert set(load_book("zenaton").plans) == {"free", "payg", "enterprise"}
    assert load_book("zenaton").terms("payg").minimum_amount == 1000
    assert load_book("zenaton").terms("free").quotas[Quota.TASKS_PER_SECOND].limit == 100
    assert load_book("zenaton").terms("enterprise").quotas[Quota.ENVIRONMENTS].limit is None


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        ('name = "test"', "", "name", "a non-empty string is required"),
        ('currency = "usd"', 'currency = "USD"', "currency", "lowercase ISO 4217"),
        ('currency = "usd"', 'currency = "dollars"', "currency", "lowercase ISO 4217"),
        (
            'default_plan = "basic"',
            'default_plan = "gold"',
            "default_plan",
            "'gold' is not one of the book's plans",
        ),
        ('name = "test"', 'name = "test"\ncolour = "blue"', "colour", "unknown key"),
        ("[meters.copilot_messages]", "[meters.tokens]", "meters.tokens", "unknown meter code"),
        ('unit = "message"', "", "meters.copilot_messages.unit", "non-empty string"),
        (
            "seat_unit_amount = { year = 900 }",
            "seat_unit_amount = { weekly = 900 }",
            "plans.basic.seat_unit_amount.weekly",
            "unknown interval",
        ),
        (
            "seat_unit_amount = { year = 900 }",
            "seat_unit_amount = { year = -1 }",
            "plans.basic.seat_unit_amount.year",
            "non-negative integer",
        ),
        (
            "seat_unit_amount = { year = 900 }",
            "seat_unit_amount = { year = 9.5 }",
            "plans.basic.seat_unit_amount.year",
            "non-negative integer",
        ),
        (
            "seat_unit_amount = { year = 900 }",
            "seat_unit_amount = 900",
            "plans.basic.seat_unit_amount",
            "table of interval = amount",
        ),
        (
            'display_name = "Basic"',
            'display_name = "Basic"\nminimum_amount = "10"',
            "plans.basic.minimum_amount",
            "non-negative integer",
        ),
        (
            'display_name = "Basic"',
            'display_name = "Basic"\nprice = 3',
            "plans.basic.price",
            "unknown key",
        ),
        (
            "[plans.basic.meters.copilot_messages]",
            "[plans.basic.meters.runner_minutes]",
            "plans.basic.meters.runner_minutes",
            "unknown meter",
        ),
        (
            'unit_amount_decimal = "2"',
            "unit_amount_decimal = 0.02",
            "plans.basic.meters.copilot_messages.unit_amount_decimal",
            "not a float",
        ),
        (
            'unit_amount_decimal = "2"',
            'unit_amount_decimal = "two"',
            "plans.basic.meters.copilot_messages.unit_amount_decimal",
            "not a decimal number",
        ),
        (
            'unit_amount_decimal = "2"',
            'unit_amount_decimal = "-2"',
            "plans.basic.meters.copilot_messages.unit_amount_decimal",
            "must not be negative",
        ),
        (
            'unit_amount_decimal = "2"',
            'unit_amount_decimal = "0.0000000000001"',
            "plans.basic.meters.copilot_messages.unit_amount_decimal",
            "12 decimal places",
        ),
        (
            'unit_amount_decimal = "2"',
            "",
            "plans.basic.meters.copilot_messages.unit_amount_decimal",
            "is required",
        ),
        (
            "included = 10",
            "included = -10",
            "plans.basic.meters.copilot_messages.included",
            "non-negative integer",
        ),
        (
            "included = 10",
            "included = 10\nper = 0",
            "plans.basic.meters.copilot_messages.per",
            "positive integer",
        ),
        (
            "included = 10",
            'tiers = [{ up_to = "inf", unit_amount_decimal = "1" }]',
            "plans.basic.meters.copilot_messages",
            "not both",
        ),
        ("environments = 3", "galaxies = 3", "plans.basic.quotas.galaxies", "unknown quota"),
        (
            "environments = 3",
            "environments = -3",
            "plans.basic.quotas.environments",
            "non-negative integer",
        ),
        (
            "environments = 3",
            'environments = { limit = 3, mode = "loud" }',
            "plans.basic.quotas.environments.mode",
            "'hard' or 'soft'",
        ),
        (
            'default_plan = "basic"',
            'default_plan = "basic"\n[seat_policy]\nincrease = "always"',
            "seat_policy.increase",
            "'prorate' or 'next_term'",
        ),
        (
            'default_plan = "basic"',
            'default_plan = "basic"\n[seat_policy]\ndecrease = "now"',
            "seat_policy.decrease",
            "'at_renewal' or 'immediate'",
        ),
    ],
)
def test_invalid_book_names_file_key_and_problem(
    tmp_path: Path, old: str, new: str, key: str, problem: str
) -> None:
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new, 1))
    with pytest.raises(PriceBookError) as caught:
        load_book(path)
    assert any(k == key and problem in p for k, p in caught.value.problems), caught.value.problems
    assert f"{path}: {key}: " in str(caught.value)


TIERED = VALID.replace(
    'included = 10\nunit_amount_decimal = "2"',
    'tiers = [\n  { up_to = 100, unit_amount_decimal = "0" },\n'
    '  { up_to = 1000, unit_amount_decimal = "2" },\n'
    '  { up_to = "inf", unit_amount_decimal = "1", flat_amount = 50 },\n]',
)


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        ("up_to = 1000", "up_to = 50", "tiers[1].up_to", "greater than the previous"),
        ('up_to = "inf"', "up_to = 5000", "tiers[2].up_to", "last tier must have up_to"),
        ("up_to = 100,", 'up_to = "inf",', "tiers[0].up_to", "greater than the previous"),
        ("flat_amount = 50", "flat_amount = -50", "tiers[2].flat_amount", "non-negative"),
        (
            '{ up_to = 1000, unit_amount_decimal = "2" }',
            "{ up_to = 1000 }",
            "tiers[1].unit_amount_decimal",
            "is required",
        ),
        (
            '{ up_to = 1000, unit_amount_decimal = "2" }',
            '{ up_to = 1000, unit_amount_decimal = "2", discount = 1 }',
            "tiers[1].discount",
            "unknown key",
        ),
    ],
)
def test_invalid_tiers(tmp_path: Path, old: str, new: str, key: str, problem: str) -> None:
    assert old in TIERED
    path = write(tmp_path, TIERED.replace(old, new, 1))
    with pytest.raises(PriceBookError) as caught:
        load_book(path)
    full_key = f"plans.basic.meters.copilot_messages.{key}"
    assert any(k == full_key and problem in p for k, p in caught.value.problems), (
        caught.value.problems
    )


def test_tiered_book_prices_through_every_tier(tmp_path: Path) -> None:
    terms = load_book(write(tmp_path, TIERED)).terms("basic")
    charge = quote(terms, 0, {Meter.COPILOT_MESSAGES: Decimal(1500)})
    assert charge.line("copilot_messages") is not None
    # 900 × 2 + 500 × 1 + the last tier's flat 50.
    assert charge.total_amount == 1800 + 500 + 50


CONTRACT = (
    VALID
    + """
[contracts.org_1]
plan = "basic"
seat_unit_amount = 700
minimum_amount = 5000

[contracts.org_1.meters.copilot_messages]
included = 1000
"""
)


def test_contract_seat_price_applies_to_the_contract_interval(tmp_path: Path) -> None:
    text = CONTRACT.replace("seat_unit_amount = 700", 'interval = "month"\nseat_unit_amount = 70')
    terms = load_book(write(tmp_path, text)).terms("basic", None, "org_1")
    assert terms.interval is Interval.MONTH
    assert terms.seat_unit_amount == 70


def test_contract_partial_override_keeps_plan_unit_price(tmp_path: Path) -> None:
    book = load_book(write(tmp_path, CONTRACT))
    terms = book.terms("basic", None, "org_1")
    assert terms.seat_unit_amount == 700
    assert terms.minimum_amount == 5000
    assert terms.meters[Meter.COPILOT_MESSAGES].included == 1000
    assert terms.meters[Meter.COPILOT_MESSAGES].tiers[-1].unit_amount_decimal == 2
    assert terms.contract_org == "org_1"
    assert book.contract_plan("org_1") == "basic"


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        ('plan = "basic"', 'plan = "gold"', "contracts.org_1.plan", "not one of the book's plans"),
        (
            "seat_unit_amount = 700",
            "seat_unit_amount = -700",
            "contracts.org_1.seat_unit_amount",
            "non-negative integer",
        ),
        (
            "minimum_amount = 5000",
            "minimum_amount = 5000\ndiscount = 10",
            "contracts.org_1.discount",
            "unknown key",
        ),
        (
            "seat_unit_amount = 700",
            'interval = "month"',
            "contracts.org_1.interval",
            "has no seat price",
        ),
        (
            'plan = "basic"',
            'plan = "basic"\ninterval = "fortnight"',
            "contracts.org_1.interval",
            "not one of: month, year",
        ),
        (
            "included = 1000",
            "included = 1000\nunit_amount_decimal = 0.5",
            "contracts.org_1.meters.copilot_messages.unit_amount_decimal",
            "not a float",
        ),
    ],
)
def test_invalid_contract(tmp_path: Path, old: str, new: str, key: str, problem: str) -> None:
    contract_start = CONTRACT.index("[contracts.org_1]")
    text = CONTRACT[:contract_start] + CONTRACT[contract_start:].replace(old, new, 1)
    with pytest.raises(PriceBookError) as caught:
        load_book(write(tmp_path, text))
    assert any(k == key and problem in p for k, p in caught.value.problems), caught.value.problems


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = VALID.replace('currency = "usd"', 'currency = "US"').replace(
        'unit_amount_decimal = "2"', "unit_amount_decimal = 2.0"
    )
    with pytest.raises(PriceBookError) as caught:
        load_book(write(tmp_path, text))
    keys = [key for key, _ in caught.value.problems]
    assert keys == ["currency", "plans.basic.meters.copilot_messages.unit_amount_decimal"]


def test_syntax_error_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PriceBookError, match=r"book\.toml: \(syntax\): "):
        load_book(write(tmp_path, "name = "))
    with pytest.raises(PriceBookError, match="file not found"):
        load_book(tmp_path / "absent.toml")
    with pytest.raises(UnknownTermsError, match="unknown price book 'gold'"):
        load_book("gold")

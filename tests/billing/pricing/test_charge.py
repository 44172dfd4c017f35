"""The pricing engine over the bundled books: seed examples, allowances, rounding, minimums."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.core.meters import Meter
from billing.pricing.book import BOOKS_DIR, PriceBook, UnknownTermsError, parse_book
from billing.pricing.charge import quote

M = Meter.COPILOT_MESSAGES
R = Meter.RUNNER_MINUTES
H = Meter.IAC_RESOURCE_HOURS
X = Meter.EXECUTION_TIME


@pytest.mark.parametrize(
    ("plan", "meter", "quantity", "cents"),
    [
        # Seed 002's worked examples.
        ("free", M, "80", 60),
        ("free", R, "120", 16),
        ("team", H, "1600000", 1000),
        # Allowance boundaries: at the allowance nothing is due, one unit above is.
        ("free", M, "50", 0),
        ("free", M, "51", 2),
        ("team", M, "500", 0),
        ("team", M, "501", 2),
        ("free", R, "100", 0),
        ("free", R, "101", 1),  # 0.8 cents rounds up
        ("team", R, "1000", 0),
        ("team", R, "1001", 1),
        ("free", H, "150000", 0),
        ("free", H, "150049", 0),  # 0.49 cents rounds down
        ("free", H, "150050", 1),  # 0.50 cents: half up
        ("team", H, "1500000", 0),
        ("team", H, "1500001", 0),
        # Half-cent rounding on the minute price: 1234 billable minutes = 987.2 cents.
        ("free", R, "1334", 987),
        ("free", R, "105", 4),  # 5 × 0.8 = 4.0
        ("free", R, "106", 5),  # 4.8 → 5
        ("free", R, "0", 0),
        # Fractional quantities are priced exactly before the single rounding.
        ("free", R, "100.5", 0),  # 0.4 cents
        ("free", R, "100.625", 1),  # 0.5 cents
    ],
)
def test_meter_lines(
    devtools: PriceBook, plan: str, meter: Meter, quantity: str, cents: int
) -> None:
    charge = quote(devtools.terms(plan), None, {meter: Decimal(quantity)})
    line = charge.line(meter.value)
    assert line is not None
    assert line.amount == cents


@pytest.mark.parametrize(
    ("plan", "interval", "seats", "cents"),
    [
        ("team", "year", 10, 9000),  # seed 002: 10 seats = $90 for the year
        ("team", "year", 1, 900),
        ("team", "year", 0, 0),
        ("free", "month", 25, 0),
        ("free", "year", 25, 0),
        ("enterprise", "year", 3, 2700),
    ],
)
def test_seat_line_is_the_full_term_price(
    devtools: PriceBook, plan: str, interval: str, seats: int, cents: int
) -> None:
    charge = quote(devtools.terms(plan, interval), seats, {})
    seat = charge.line("seats")
    assert seat is not None
    assert seat.amount == cents
    assert charge.total_amount == cents


def test_monthly_invoice_sums_rounded_lines(devtools: PriceBook) -> None:
    charge = quote(
        devtools.terms("free"), 0, {M: Decimal(80), R: Decimal(120), H: Decimal(150_050)}
    )
    assert [line.amount for line in charge.lines] == [0, 60, 16, 1]
    assert charge.total_amount == 77


@pytest.mark.parametrize(
    ("plan", "seconds", "usage_cents", "minimum_cents", "total"),
    [
        # Seed 000: an agent busy 30 % of a 31-day month = 223.2 hours × $0.130 = $29.02.
        ("payg", 803_520, 2902, None, 2902),
        # Under the $10 minimum: the top-up is a separate line.
        ("payg", 0, 0, 1000, 1000),
        ("payg", 36_000, 130, 870, 1000),  # 10 hours = $1.30
        ("payg", 276_923, 1000, None, 1000),  # 999.99986 cents rounds to exactly $10
        ("payg", 276_900, 1000, None, 1000),  # 999.9166… rounds up to 1000: no top-up
        ("payg", 276_800, 1000, None, 1000),  # 999.5555… → 1000
        ("payg", 276_700, 999, 1, 1000),  # 999.19… → 999, top-up 1
        ("free", 10_000_000, 0, None, 0),  # free plan: no charge, no minimum
    ],
)
def test_zenaton_execution_time_and_minimum(
    zenaton: PriceBook,
    plan: str,
    seconds: int,
    usage_cents: int,
    minimum_cents: int | None,
    total: int,
) -> None:
    charge = quote(zenaton.terms(plan), None, {X: Decimal(seconds)})
    usage = charge.line("execution_time")
    assert usage is not None
    assert usage.amount == usage_cents
    minimum = charge.line("minimum")
    assert (minimum.amount if minimum else None) == minimum_cents
    assert charge.total_amount == total


@pytest.mark.parametrize(
    ("org", "plan", "usage", "expected"),
    [
        # Contract: 750/seat/year, 20,000 messages included at 1.5 cents, minimum $500.
        (
            "org_enterprise_example",
            "enterprise",
            {M: "20001"},
            {"copilot_messages": 2, "minimum": 49998},
        ),  # 1 message at 1.5 cents rounds to 2
        (
            "org_enterprise_example",
            "enterprise",
            {M: "20000"},
            {"copilot_messages": 0, "minimum": 50000},
        ),
        # Graduated tiers: 10,000 free, then 0.6 up to 100,000, then 0.4: 54,000 + 4,000.
        (
            "org_enterprise_example",
            "enterprise",
            {R: "110000"},
            {"runner_minutes": 58000, "minimum": None},
        ),
        # Fields the contract does not override keep the plan's values.
        (
            "org_enterprise_example",
            "enterprise",
            {H: "1500100"},
            {"iac_resource_hours": 1, "minimum": 49999},
        ),
        (
            "org_zen_enterprise_example",
            "enterprise",
            {X: "3600000"},
            {"execution_time": 10000, "minimum": 190000},
        ),  # 1,000 hours at 10 cents
    ],
)
def test_contract_overrides(
    devtools: PriceBook,
    zenaton: PriceBook,
    org: str,
    plan: str,
    usage: dict[Meter, str],
    expected: dict[str, int | None],
) -> None:
    book = devtools if org in devtools.contracts else zenaton
    terms = book.terms(plan, None, org)
    charge = quote(
        terms, 2 if terms.has_seats else None, {meter: Decimal(q) for meter, q in usage.items()}
    )
    amounts = {line.code: line.amount for line in charge.lines}
    for code, cents in expected.items():
        assert amounts.get(code) == cents  # None: no such line (no top-up above the minimum)
    if terms.has_seats:
        assert amounts["seats"] == 1500  # 2 seats at the contract's 750


def test_contract_does_not_leak_to_other_orgs(devtools: PriceBook) -> None:
    assert devtools.terms("enterprise", "year").seat_unit_amount == 900
    assert devtools.terms("enterprise", "year", "org_someone_else").seat_unit_amount == 900
    assert devtools.terms("enterprise", "year", "org_enterprise_example").seat_unit_amount == 750


def test_a_contract_org_on_another_plan_pays_that_plan(devtools: PriceBook) -> None:
    # SPEC §10: the org may sit on any plan; its contract applies only on the contract's plan.
    terms = devtools.terms("team", "year", "org_enterprise_example")
    assert terms.contract_org is None
    assert terms.seat_unit_amount == devtools.terms("team", "year").seat_unit_amount


def test_a_contract_applies_from_its_effective_at() -> None:
    data = tomllib.loads((BOOKS_DIR / "devtools.toml").read_text())
    data["contracts"]["org_enterprise_example"]["effective_at"] = datetime(2027, 1, 1, tzinfo=UTC)
    book = parse_book(data, "test")
    before, after = datetime(2026, 12, 31, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    assert (
        book.terms("enterprise", "year", "org_enterprise_example", at=before).contract_org is None
    )
    on = book.terms("enterprise", "year", "org_enterprise_example", at=after)
    assert on.seat_unit_amount == 750
    assert book.is_contract_move("org_enterprise_example", "enterprise", after)
    assert not book.is_contract_move("org_enterprise_example", "enterprise", before)


@pytest.mark.parametrize(
    ("plan", "interval", "seats", "usage", "message"),
    [
        ("gold", None, None, {}, "unknown plan 'gold'"),
        ("team", "month", None, {}, "not offered with interval 'month'"),
        ("payg", None, 3, {}, "has no seats"),
        ("payg", None, None, {M: "1"}, "'copilot_messages' is not billed on plan 'payg'"),
    ],
)
def test_unknown_terms(
    zenaton: PriceBook,
    devtools: PriceBook,
    plan: str,
    interval: str | None,
    seats: int | None,
    usage: dict[Meter, str],
    message: str,
) -> None:
    book = devtools if plan in devtools.plans else zenaton
    with pytest.raises(UnknownTermsError, match=message):
        quote(book.terms(plan, interval), seats, {m: Decimal(q) for m, q in usage.items()})


def test_tier_explanation_adds_up(devtools: PriceBook) -> None:
    terms = devtools.terms("enterprise", None, "org_enterprise_example")
    line = quote(terms, 0, {R: Decimal(110_000)}).line("runner_minutes")
    assert line is not None
    assert [(t.up_to, t.quantity) for t in line.tiers] == [
        (10_000, Decimal(10_000)),
        (100_000, Decimal(90_000)),
        (None, Decimal(10_000)),
    ]
    assert sum(t.exact_amount for t in line.tiers) == Decimal(58_000)
    assert line.included == 10_000
    assert line.billable == 100_000
    assert line.unit_amount_decimal == Decimal("0.4")

"""A quote's inputs checked against a book: every problem named by its field, bounds that keep
amounts exact, and JSON values (integers, exact decimals) accepted without floats."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.core.meters import Interval
from billing.pricing.book import PriceBook, load_book
from billing.pricing.quote_input import (
    MAX_QUANTITY,
    MAX_SEAT_COUNT,
    FieldProblem,
    QuoteInputError,
    QuoteRequest,
    parse_quantity,
    parse_seat_count,
    price_request,
)


def problems(book: PriceBook, request: QuoteRequest) -> list[tuple[str | None, str]]:
    with pytest.raises(QuoteInputError) as caught:
        price_request(book, request)
    return [(p.field, p.message) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("value", "seats"),
    [("0", 0), ("10", 10), (" 12 ", 12), (7, 7), (MAX_SEAT_COUNT, MAX_SEAT_COUNT)],
)
def test_seat_counts(value: object, seats: int) -> None:
    assert parse_seat_count(value) == seats


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "non-negative whole number"),
        ("2.5", "non-negative whole number"),
        ("ten", "non-negative whole number"),
        ("١٢", "non-negative whole number"),  # digits, but not ASCII ones
        (True, "non-negative whole number"),
        (Decimal("10.0"), "non-negative whole number"),
        (10.0, "non-negative whole number"),
        (MAX_SEAT_COUNT + 1, "at most 10,000,000"),
        ("9" * 5000, "at most 10,000,000"),  # longer than int() converts: no crash
    ],
)
def test_bad_seat_counts(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_seat_count(value)


@pytest.mark.parametrize(
    ("value", "quantity"),
    [
        ("80", Decimal(80)),
        (" 3600.5 ", Decimal("3600.5")),
        (800, Decimal(800)),
        (Decimal("1.25"), Decimal("1.25")),
        ("1e3", Decimal(1000)),
        ("0", Decimal(0)),
    ],
)
def test_quantities(value: object, quantity: Decimal) -> None:
    assert parse_quantity(value) == quantity


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lots", "'lots' is not a number"),
        ("1,600,000", "is not a number"),
        ("NaN", "is not a number"),
        ("Infinity", "is not a number"),
        (1.5, "is not a number"),  # a float never carries a quantity
        (True, "is not a number"),
        ([1], "is not a number"),
        ("-1", "must not be negative"),
        (str(MAX_QUANTITY), "must be less than 1,000,000,000,000,000"),
        ("1e70", "must be less than"),  # would overflow the 60-digit money context
        ("1e-999999999", "at most 12 decimal places"),  # a billion digits to print
        ("0.0000000000001", "at most 12 decimal places"),
    ],
)
def test_bad_quantities(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_quantity(value)


def test_defaults_are_the_books_default_plan_and_its_first_interval(devtools: PriceBook) -> None:
    priced = price_request(devtools, QuoteRequest())
    assert (priced.terms.plan, priced.terms.interval) == ("free", Interval.MONTH)
    assert priced.charge.total_amount == 0


def test_empty_strings_are_not_given(devtools: PriceBook) -> None:
    request = QuoteRequest(plan="team", interval="", seats="", usage={"copilot_messages": ""})
    priced = price_request(devtools, request)
    assert priced.terms.interval is Interval.YEAR
    assert priced.charge.total_amount == 0


def test_every_field_problem_is_reported_at_once(devtools: PriceBook) -> None:
    request = QuoteRequest(
        plan="team",
        interval="week",
        seats="-3",
        usage={"copilot_messages": "-1", "runner_minutes": "lots"},
    )
    assert problems(devtools, request) == [
        ("interval", "must be month or year"),
        ("seats", "must be a non-negative whole number"),
        ("usage.copilot_messages", "must not be negative"),
        ("usage.runner_minutes", "'lots' is not a number"),
    ]


@pytest.mark.parametrize(
    ("book_name", "request_", "expected"),
    [
        (
            "devtools",
            QuoteRequest(plan="gold"),
            [("plan", "unknown plan 'gold' in book 'devtools' (plans: enterprise, free, team)")],
        ),
        (
            "devtools",
            QuoteRequest(plan=3),
            [("plan", "unknown plan 3 in book 'devtools' (plans: enterprise, free, team)")],
        ),
        (
            "devtools",
            QuoteRequest(plan="team", interval="month"),
            [
                (
                    "interval",
                    "plan 'team' in book 'devtools' is not offered with interval 'month' "
                    "(offered: year)",
                )
            ],
        ),
        (
            "devtools",
            QuoteRequest(plan="free", usage={"tokens": 3}),
            [
                (
                    "usage.tokens",
                    "unknown meter 'tokens' (meters of plan 'free': copilot_messages, "
                    "runner_minutes, iac_resource_hours)",
                )
            ],
        ),
        (
            "devtools",
            QuoteRequest(plan="free", usage={"execution_time": 3}),
            [
                (
                    "usage.execution_time",
                    "meter 'execution_time' is not billed on plan 'free' of book 'devtools' "
                    "(meters: copilot_messages, runner_minutes, iac_resource_hours)",
                )
            ],
        ),
        (
            "devtools",
            QuoteRequest(usage=[1, 2]),
            [("usage", "must be an object of METER: QUANTITY")],
        ),
        (
            "zenaton",
            QuoteRequest(plan="payg", seats=3),
            [("seats", "plan 'payg' in book 'zenaton' has no seats")],
        ),
        (
            "devtools",
            QuoteRequest(plan="team", contract="org_enterprise_example"),
            [
                (
                    "plan",
                    "org 'org_enterprise_example' has a contract on plan 'enterprise', not 'team'",
                )
            ],
        ),
        (
            "devtools",
            QuoteRequest(contract="nobody"),
            [("contract", "no contract for org 'nobody' in book 'devtools'")],
        ),
    ],
)
def test_problems_name_their_field(
    book_name: str, request_: QuoteRequest, expected: list[tuple[str, str]]
) -> None:
    assert problems(load_book(book_name), request_) == expected


def test_a_contract_prices_its_own_plan_when_none_is_given(devtools: PriceBook) -> None:
    priced = price_request(devtools, QuoteRequest(seats=4, contract="org_enterprise_example"))
    assert priced.terms.plan == "enterprise"
    assert priced.terms.contract_org == "org_enterprise_example"
    assert [(line.code, line.amount) for line in priced.charge.lines if line.amount] == [
        ("seats", 3000),  # 4 × $7.50
        ("minimum", 50000),
    ]


def test_problem_text_lists_every_field() -> None:
    error = QuoteInputError([FieldProblem("seats", "bad"), FieldProblem(None, "worse")])
    assert str(error) == "seats: bad; request: worse"

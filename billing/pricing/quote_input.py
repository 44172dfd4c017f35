"""A quote's inputs checked against a price book and priced, each problem naming its field.

The CLI (`billing quote`), the pricing page and `POST /api/quote` all hand their raw inputs
(strings from a command line or a form, JSON values from a body) to `price_request`, so they
accept and refuse the same things with the same words. Fields are named as in the API body:
`book`, `plan`, `interval`, `seats`, `usage.METER`, `contract`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from billing.core.meters import Interval, Meter
from billing.core.money import MAX_DECIMAL_PLACES, decimal_places, parse_decimal
from billing.pricing.book import PriceBook, Terms, UnknownTermsError
from billing.pricing.charge import Charge, quote

# Bounds that keep every amount exact and every number short to print (billing.core.money works
# to 60 digits): Stripe's meters take at most 15 significant digits and 12 decimal places, and
# no organisation buys ten million seats.
MAX_QUANTITY = Decimal(10) ** 15
MAX_SEAT_COUNT = 10_000_000
USAGE = "usage"


@dataclass(frozen=True)
class FieldProblem:
    """What is wrong with one input; `field` is None when the request as a whole is wrong."""

    field: str | None
    message: str


class QuoteInputError(ValueError):
    """Inputs a quote cannot be priced from; `problems` lists each one found."""

    def __init__(self, problems: Sequence[FieldProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{p.field or 'request'}: {p.message}" for p in problems))


@dataclass(frozen=True)
class QuoteRequest:
    """Raw inputs as they arrived; empty strings and None mean "not given"."""

    plan: object = None
    interval: object = None
    seats: object = None
    usage: object = field(default_factory=dict)
    contract: object = None


@dataclass(frozen=True)
class PricedQuote:
    terms: Terms
    charge: Charge


def usage_field(code: str) -> str:
    return f"{USAGE}.{code}"


def given(value: object) -> bool:
    return value is not None and value != ""


def parse_seat_count(value: object) -> int:
    """A seat count from an integer or a string of ASCII digits; ValueError says what is wrong."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        digits = value.strip().lstrip("0") or "0"
        value = int(digits) if len(digits) <= len(str(MAX_SEAT_COUNT)) else MAX_SEAT_COUNT + 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("must be a non-negative whole number")
    if value > MAX_SEAT_COUNT:
        raise ValueError(f"must be at most {MAX_SEAT_COUNT:,}")
    return value


def parse_quantity(value: object) -> Decimal:
    """A usage quantity from an integer, a Decimal or a decimal string (never a float)."""
    if isinstance(value, str):
        value = value.strip()
    try:
        quantity = parse_decimal(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
    if quantity < 0:
        raise ValueError("must not be negative")
    if quantity >= MAX_QUANTITY:
        raise ValueError(f"must be less than {MAX_QUANTITY:,}")
    if decimal_places(quantity) > MAX_DECIMAL_PLACES:
        raise ValueError(f"must have at most {MAX_DECIMAL_PLACES} decimal places")
    return quantity


def price_request(book: PriceBook, request: QuoteRequest) -> PricedQuote:
    """Check every input against `book`, then price the quote with the engine.

    Raises QuoteInputError listing every problem found (a bad plan or contract stops the
    checks that depend on it)."""
    plan, contract = _plan_and_contract(book, request)
    problems: list[FieldProblem] = []
    interval = _interval(request.interval, problems)
    seat_count = _seat_count(request.seats, problems)
    quantities = _quantities(request.usage, problems)
    terms: Terms | None = None
    try:
        terms = book.terms(plan, interval, contract)
    except UnknownTermsError as exc:
        problems.append(FieldProblem("interval", _text(exc)))
    if terms is None:
        raise QuoteInputError(problems)
    if seat_count and not terms.has_seats:
        problems.append(FieldProblem("seats", f"plan {plan!r} in book {book.name!r} has no seats"))
    usage = _billed_usage(book, terms, quantities, problems)
    if problems:
        raise QuoteInputError(problems)
    return PricedQuote(terms, quote(terms, seat_count, usage))


def _text(exc: Exception) -> str:
    return str(exc).strip("'\"")


def _plan_and_contract(book: PriceBook, request: QuoteRequest) -> tuple[str, str | None]:
    """The plan to price (the contract's, or the book's default, when none is given)."""
    contract = request.contract if given(request.contract) else None
    if contract is not None and (not isinstance(contract, str) or contract not in book.contracts):
        raise QuoteInputError(
            [FieldProblem("contract", f"no contract for org {contract!r} in book {book.name!r}")]
        )
    plan = request.plan
    if not given(plan):
        plan = book.contract_plan(contract) if contract else book.default_plan
    if not isinstance(plan, str) or plan not in book.plans:
        known = ", ".join(sorted(book.plans))
        raise QuoteInputError(
            [FieldProblem("plan", f"unknown plan {plan!r} in book {book.name!r} (plans: {known})")]
        )
    if contract is not None and book.contract_plan(contract) != plan:
        message = f"org {contract!r} has a contract on plan {book.contract_plan(contract)!r}"
        raise QuoteInputError([FieldProblem("plan", f"{message}, not {plan!r}")])
    return plan, contract


def _interval(value: object, problems: list[FieldProblem]) -> Interval | None:
    if not given(value):
        return None
    if not isinstance(value, str) or value not in set(Interval):
        problems.append(FieldProblem("interval", "must be month or year"))
        return None
    return Interval(value)


def _seat_count(value: object, problems: list[FieldProblem]) -> int | None:
    if not given(value):
        return None
    try:
        return parse_seat_count(value)
    except ValueError as exc:
        problems.append(FieldProblem("seats", str(exc)))
        return None


def _quantities(value: object, problems: list[FieldProblem]) -> dict[str, Decimal]:
    """Quantities by meter code as given; an empty quantity is left out (priced at zero)."""
    if not isinstance(value, Mapping):
        problems.append(FieldProblem(USAGE, "must be an object of METER: QUANTITY"))
        return {}
    raw: Mapping[Any, object] = value
    quantities: dict[str, Decimal] = {}
    for code, quantity in raw.items():
        if not given(quantity):
            continue
        try:
            quantities[str(code)] = parse_quantity(quantity)
        except ValueError as exc:
            problems.append(FieldProblem(usage_field(str(code)), str(exc)))
    return quantities


def _billed_usage(
    book: PriceBook, terms: Terms, quantities: Mapping[str, Decimal], problems: list[FieldProblem]
) -> dict[Meter, Decimal]:
    """The quantities of meters the terms bill; any other code is a problem of its field."""
    billed = ", ".join(m.value for m in terms.meters)
    usage: dict[Meter, Decimal] = {}
    for code, quantity in quantities.items():
        if code not in set(Meter):
            message = f"unknown meter {code!r} (meters of plan {terms.plan!r}: {billed})"
        elif Meter(code) not in terms.meters:
            message = (
                f"meter {code!r} is not billed on plan {terms.plan!r} of book {book.name!r} "
                f"(meters: {billed})"
            )
        else:
            usage[Meter(code)] = quantity
            continue
        problems.append(FieldProblem(usage_field(code), message))
    return usage

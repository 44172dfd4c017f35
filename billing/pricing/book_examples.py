"""The worked examples a price book lists (`[[examples]]`) for its formula document, validated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from billing.core.meters import Interval, Meter
from billing.core.money import parse_decimal
from billing.pricing.book_format import Validator

if TYPE_CHECKING:
    from billing.pricing.book import PriceBook

_EXAMPLE_KEYS = {"title", "plan", "interval", "seats", "usage"}


@dataclass(frozen=True)
class BookExample:
    """A quote the book documents: a plan (and interval), seats and one month of usage."""

    title: str
    plan: str
    interval: Interval | None
    seat_count: int | None
    usage: Mapping[Meter, Decimal]


def parse_examples(v: Validator, raw: object, book: PriceBook) -> tuple[BookExample, ...]:
    """The valid `[[examples]]` of a book already resolved: each names one of its plans, an
    interval the plan is offered with, and only meters the plan bills."""
    if not isinstance(raw, list):
        v.problem("examples", "must be an array of [[examples]] tables")
        return ()
    examples = (_parse_example(v, table, f"examples[{n}]", book) for n, table in enumerate(raw))
    return tuple(example for example in examples if example is not None)


def _parse_example(v: Validator, table: object, key: str, book: PriceBook) -> BookExample | None:
    if not isinstance(table, dict):
        v.problem(key, "must be a table")
        return None
    before = len(v.problems)
    v.keys(table, key, _EXAMPLE_KEYS)
    title = v.string(table, key, "title")
    plan = table.get("plan")
    interval = table.get("interval")
    seats = table.get("seats")
    if seats is not None and (isinstance(seats, bool) or not isinstance(seats, int) or seats < 0):
        v.problem(f"{key}.seats", f"must be a non-negative integer, got {seats!r}")
    if plan not in book.plans:
        v.problem(f"{key}.plan", f"{plan!r} is not one of the book's plans")
        return None
    try:
        terms = book.terms(str(plan), interval)
    except LookupError as exc:
        v.problem(f"{key}.interval", str(exc).strip("'\""))
        return None
    if seats and not terms.has_seats:
        v.problem(f"{key}.seats", f"plan {plan!r} has no seats")
    usage = _usage(v, table.get("usage", {}), f"{key}.usage", set(terms.meters))
    if len(v.problems) > before or title is None:
        return None
    return BookExample(
        title=title,
        plan=str(plan),
        interval=None if interval is None else Interval(interval),
        seat_count=seats,
        usage=MappingProxyType(usage),
    )


def _usage(v: Validator, raw: object, key: str, billed: set[Meter]) -> dict[Meter, Decimal]:
    """`{ METER = QUANTITY }`: quantities are integers or decimal strings, never floats."""
    usage: dict[Meter, Decimal] = {}
    if not isinstance(raw, dict):
        v.problem(key, "must be a table of METER = QUANTITY")
        return usage
    table: Mapping[str, Any] = raw
    for code, value in table.items():
        if code not in set(Meter) or Meter(code) not in billed:
            v.problem(f"{key}.{code}", "is not a meter the example's plan bills")
            continue
        try:
            quantity = parse_decimal(value)
        except ValueError as exc:
            v.problem(f"{key}.{code}", str(exc))
            continue
        if quantity < 0:
            v.problem(f"{key}.{code}", f"must not be negative, got {value!r}")
            continue
        usage[Meter(code)] = quantity
    return usage

"""The public pricing pages: the calculator (`GET /pricing`) and the formulas (`/pricing/formulas`).

Both are generated from the price books and priced by the engine through
billing.pricing.quote_input, as `billing quote` and `POST /api/quote` are. The calculator works
as a plain GET form; a small inline script re-fetches the same page as the visitor types and
swaps in its result. Quotes share the rate limit of the quote API (worker/web/quote_api.py).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from billing.core.components import SEATS
from billing.core.meters import Interval, Meter
from billing.core.money import format_minor_units
from billing.pricing.book import BOOKS_DIR, PriceBook, load_book
from billing.pricing.formula_text import quote_rows
from billing.pricing.formulas import formulas_html, formulas_markdown
from billing.pricing.quote_input import (
    USAGE,
    FieldProblem,
    PricedQuote,
    QuoteInputError,
    QuoteRequest,
    price_request,
)
from worker.web.common import TEMPLATES, services_of
from worker.web.rate_limit import RateLimiter, client_address

# One bucket for every quote a client asks for, on the page or through the API.
QUOTE_LIMITER = RateLimiter(capacity=60, refill_per_second=1)
FORM_BOOK = "form_book"  # hidden: the book the submitted form was drawn for


@functools.lru_cache(maxsize=8)
def web_books(configured: str) -> Mapping[str, PriceBook]:
    """The books the public pages quote, by name: the configured one first, then the bundled.
    Only these: a query never names a file."""
    first = load_book(configured)
    books = {first.name: first}
    for path in sorted(BOOKS_DIR.glob("*.toml")):
        book = load_book(path)
        books.setdefault(book.name, book)
    return MappingProxyType(books)


def books_of(request: Request) -> tuple[Mapping[str, PriceBook], PriceBook]:
    books = web_books(services_of(request).default_book)
    return books, next(iter(books.values()))


@dataclass
class PageState:
    """What the calculator shows: the form's values, its problems, and the quote if any."""

    book: PriceBook
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)  # by input id
    general: list[str] = field(default_factory=list)  # problems no input on the page owns
    note: str = ""
    priced: PricedQuote | None = None


def page_state(
    books: Mapping[str, PriceBook], default: PriceBook, params: QueryParams
) -> PageState:
    """Read the query, price it, and put every problem beside the input it is about."""
    name = params.get("book") or default.name
    if name not in books:
        state = PageState(default, {"book": name})
        state.errors["book"] = f"unknown price book {name!r} (books: {', '.join(books)})"
        return state
    book = books[name]
    values = {key: params.get(key, "").strip() for key in ("plan", "interval", "seats")}
    usage = {code: params[code].strip() for code in params if code in set(Meter)}
    state = PageState(book, {"book": name, **values, **usage})
    if params.get(FORM_BOOK, name) != name:  # the book was switched: start from its defaults
        state.values = {"book": name}
        state.note = f"Showing the {name} book: choose a plan and enter its usage."
        values, usage = {}, {}
    request = QuoteRequest(**values, usage=usage)
    try:
        state.priced = price_request(book, request)
    except QuoteInputError as exc:
        _place(state, exc.problems)
    return state


def _place(state: PageState, problems: tuple[FieldProblem, ...]) -> None:
    """Each problem beside its input (in the form's order), or in the summary when the page has
    no input for its field (a meter the book does not define)."""
    inputs = ["plan", "interval", "seats", *(meter.value for meter in state.book.meter_definitions)]
    found: dict[str, str] = {}
    for problem in problems:
        input_id = (problem.field or "").removeprefix(f"{USAGE}.")
        if input_id in inputs:
            found[input_id] = problem.message
        elif problem.field:
            state.general.append(f"{problem.field}: {problem.message}")
        else:
            state.general.append(problem.message)
    state.errors.update((key, found[key]) for key in inputs if key in found)


def _result(state: PageState) -> dict[str, Any] | None:
    """The quote's lines and sums as the page shows them (every amount is the engine's)."""
    if state.priced is None:
        return None
    book, terms, charge = state.book, state.priced.terms, state.priced.charge
    seats = charge.line(SEATS)
    usage_amount = sum(line.amount for line in charge.lines if line.code != SEATS)
    basis = f"seats per {terms.interval}, usage per month" if seats else "usage per month"
    return {
        "caption": f"{book.plan_display_name(terms.plan)} · {book.name} book · {basis}",
        "rows": quote_rows(book, terms, charge),
        "seats": None if seats is None else format_minor_units(seats.amount, book.currency),
        "interval": terms.interval.value,
        "usage": format_minor_units(usage_amount, book.currency),
        "minimum": format_minor_units(terms.minimum_amount, book.currency)
        if terms.minimum_amount
        else None,
        "total": format_minor_units(charge.total_amount, book.currency),
        "total_amount": charge.total_amount,
    }


def _form(books: Mapping[str, PriceBook], state: PageState) -> dict[str, Any]:
    book = state.book
    has_seats = any(book.terms(plan).has_seats for plan in book.plans)
    intervals = [i.value for i in Interval if any(i in book.plan_intervals(p) for p in book.plans)]
    labels = {"book": "Price book", "plan": "Plan", "interval": "Seat term", "seats": "Seats"}
    hints = {"seats": "Priced for a full term.", "interval": "Month or year, as the plan offers."}
    for meter in book.meter_definitions.values():
        labels[meter.meter.value] = meter.display_name
        hints[meter.meter.value] = f"{meter.unit.capitalize()}s in one month."
    return {
        "labels": labels,
        "hints": hints,
        "books": list(books),
        "plans": [(plan, book.plan_display_name(plan)) for plan in book.plans],
        "plan": state.values.get("plan") or book.default_plan,
        "intervals": intervals if has_seats else [],
        "meters": list(book.meter_definitions.values()),
        "values": state.values,
        "errors": state.errors,
        "general": state.general,
        "note": state.note,
        "form_book": book.name,
    }


def make_routes(limiter: RateLimiter) -> list[Route]:
    async def pricing_page(request: Request) -> Response:
        if wait := limiter.take(client_address(request)):
            context = {"wait": wait, "limit": limiter.describe()}
            headers = {"Retry-After": str(wait)}
            return TEMPLATES.TemplateResponse(
                request, "pricing_busy.html", context, status_code=429, headers=headers
            )
        books, default = books_of(request)
        state = page_state(books, default, request.query_params)
        context = {**_form(books, state), "result": _result(state)}
        status = 400 if state.errors or state.general else 200
        return TEMPLATES.TemplateResponse(request, "pricing.html", context, status_code=status)

    async def formulas_page(request: Request) -> Response:
        books, default = books_of(request)
        name = request.query_params.get("book") or default.name
        if name not in books:
            message = f"unknown price book {name!r} (books: {', '.join(books)})"
            return PlainTextResponse(message, status_code=404)
        book = books[name]
        if request.query_params.get("format") == "markdown":
            return PlainTextResponse(formulas_markdown(book), media_type="text/markdown")
        context = {"book": name, "books": list(books), "document": formulas_html(book)}
        return TEMPLATES.TemplateResponse(request, "pricing_formulas.html", context)

    return [
        Route("/pricing", pricing_page, methods=["GET"]),
        Route("/pricing/formulas", formulas_page, methods=["GET"]),
    ]


routes = make_routes(QUOTE_LIMITER)

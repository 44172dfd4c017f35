"""The formula document of a price book (seed 002, generated): book in, Markdown or HTML out.

Every number in it is the book's own or one the engine computed (billing.pricing.charge.quote,
billing.pricing.proration.prorated_amount); nothing here does pricing arithmetic. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from billing.core.components import MINIMUM, SEATS
from billing.core.meters import Interval, Meter
from billing.core.money import format_minor_units, format_unit_amount
from billing.core.periods import term_period, to_unix
from billing.pricing.book import PriceBook, SeatDecrease, SeatIncrease, Terms
from billing.pricing.book_examples import BookExample
from billing.pricing.charge import Charge, quote
from billing.pricing.document import (
    Block,
    Bullets,
    Code,
    Heading,
    Paragraph,
    Table,
    to_html,
    to_markdown,
)
from billing.pricing.formula_text import (
    TIMES,
    is_simple,
    line_formula,
    meter_formula,
    quantity_text,
    quote_rows,
    unit_price_text,
)
from billing.pricing.proration import prorated_amount

# The proration example's term starts here; seats are added part-way through it.
EXAMPLE_TERM_START = datetime(2026, 1, 1, tzinfo=UTC)
EXAMPLE_ADDED_AFTER = {Interval.YEAR: timedelta(days=181), Interval.MONTH: timedelta(days=21)}
EXAMPLE_SEATS = 10
EXAMPLE_SEATS_ADDED = 2


def formulas_markdown(book: PriceBook, *, contracts: bool = False) -> str:
    return to_markdown(formulas_document(book, contracts=contracts))


def formulas_html(book: PriceBook, *, contracts: bool = False) -> str:
    """The same document as an HTML fragment (the page around it is the caller's)."""
    return to_html(formulas_document(book, contracts=contracts))


def formulas_document(book: PriceBook, *, contracts: bool = False) -> tuple[Block, ...]:
    """Rules, meters, plans, minimum, proration, the book's examples (and its contracts)."""
    blocks = [
        *_rules(book, contracts),
        *_meters(book),
        *_plans(book),
        *_minimum(book, contracts),
        *_proration(book),
        *_examples(book),
    ]
    if contracts:
        blocks += _contracts(book)
    return tuple(blocks)


def list_terms(book: PriceBook) -> Iterator[tuple[str, Terms]]:
    """Each plan's terms at its first interval (meters and minimums do not vary by interval)."""
    for plan in book.plans:
        yield plan, book.terms(plan, book.plan_intervals(plan)[0])


def contract_terms(book: PriceBook) -> Iterator[tuple[str, Terms]]:
    for org_id, raw in book.contracts.items():
        yield org_id, book.terms(str(raw["plan"]), raw.get("interval"), org_id)


def example_usage(terms: Terms, *, below_minimum: bool = False) -> dict[Meter, Decimal]:
    """A month's usage for a worked example: 20 % over each allowance (100 packages where there
    is none); `below_minimum`: 10 packages over, small enough to show a minimum's top-up."""
    usage: dict[Meter, Decimal] = {}
    for meter, price in terms.meters.items():
        if below_minimum:
            usage[meter] = Decimal(price.included + 10 * price.per)
        elif price.included:
            usage[meter] = Decimal(price.included * 6 // 5)
        else:
            usage[meter] = Decimal(100 * price.per)
    return usage


# --------------------------------------------------------------------------- sections


def _rules(book: PriceBook, contracts: bool) -> list[Block]:
    has_seats = any(terms.has_seats for _, terms in list_terms(book))
    has_minimum = any(terms.minimum_amount for _, terms in _all_terms(book, contracts))
    rules = ["Usage is billed monthly, in arrears, on every plan (Free included)."]
    if has_seats:
        rules.append("Seats are billed per term (a month or a year), upfront.")
    rules += [
        "Per meter: `charge = max(0, total − included) × unit price`, where `total` is the "
        "meter's total for the calendar month (UTC).",
        "Each line is rounded once, half up, to the cent; totals are sums of rounded lines "
        "(0.5¢ → 1¢, 0.49¢ → 0¢).",
    ]
    if has_minimum:
        rules.append(
            "A plan with a monthly minimum bills `max(minimum, usage)`: the difference is a "
            "separate minimum-commitment line."
        )
    code = ["monthlyUsage = sum over meters of round(max(0, total - included) * unitPrice)"]
    if has_minimum:
        code.append("monthlyCharge = monthlyUsage + max(0, monthlyMinimum - monthlyUsage)")
    if has_seats:
        code.append("seatCharge = round(seats * seatPricePerTerm)   // once per term, upfront")
    return [
        Heading(1, f"Pricing formulas: the {book.name} price book"),
        Paragraph(
            f"Generated from the price book `{book.name}` by `billing book formulas`. Every "
            "amount below was computed by the billing engine, the code that bills; the pricing "
            "page (`/pricing`) and `POST /api/quote` use the same engine. Amounts are in "
            f"{book.currency.upper()}."
        ),
        Heading(2, "How a bill is computed"),
        Bullets(tuple(rules)),
        Code("\n".join(code)),
    ]


def _meters(book: PriceBook) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Meters")]
    for meter, definition in book.meter_definitions.items():
        rows = tuple(
            (
                book.plan_display_name(plan),
                quantity_text(price.included),
                _price_text(book, terms, meter),
                f"`{meter_formula(price, definition, book.currency)}`",
            )
            for plan, terms in list_terms(book)
            if (price := terms.meters.get(meter)) is not None
        )
        blocks += [
            Heading(3, f"{definition.display_name} (`{meter.value}`)"),
            Paragraph(f"Counted in {definition.unit}s per calendar month."),
            Table(
                f"{definition.display_name} by plan",
                ("Plan", "Included per month", "Unit price", "Formula"),
                rows,
                frozenset({1}),
            ),
        ]
    return blocks


def _plans(book: PriceBook) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Plans")]
    for plan, terms in list_terms(book):
        name = book.plan_display_name(plan)
        facts = [_seat_text(book, plan)]
        if book.plans[plan].get("negotiated"):
            facts.append("Negotiated: these list terms apply unless a contract overrides them.")
        if terms.minimum_amount:
            minimum = format_minor_units(terms.minimum_amount, book.currency)
            facts.append(f"Monthly minimum of the usage charge: {minimum}.")
        seats = EXAMPLE_SEATS if terms.has_seats else None
        usage = example_usage(terms)
        blocks += [
            Heading(3, f"{name} (`{plan}`)"),
            Bullets(tuple(facts)),
            _allowance_table(book, terms, f"{name}: included per month and unit prices"),
            Paragraph(f"Worked example: {_inputs_text(book, seats, usage)}."),
            quote_table(book, terms, quote(terms, seats, usage), f"{name}: worked example"),
        ]
    return blocks


def _minimum(book: PriceBook, contracts: bool) -> list[Block]:
    with_minimum = [(label, t) for label, t in _all_terms(book, contracts) if t.minimum_amount]
    blocks: list[Block] = [Heading(2, "Monthly minimum commitment")]
    if not with_minimum:
        return [
            *blocks,
            Paragraph(
                "No plan of this book has a monthly minimum. A negotiated contract may set one: "
                "it is billed as a separate line, `max(0, minimum − monthly usage)`."
            ),
        ]
    blocks.append(
        Paragraph(
            "`minimum top-up = max(0, monthly minimum − monthly usage)`, billed as its own line, "
            "so the invoice shows both the usage and the top-up."
        )
    )
    for label, terms in with_minimum:
        usage = example_usage(terms, below_minimum=True)
        blocks += [
            Paragraph(f"Example, {label}: {_inputs_text(book, None, usage)}."),
            quote_table(book, terms, quote(terms, None, usage), f"{label}: under the minimum"),
        ]
    return blocks


def _proration(book: PriceBook) -> list[Block]:
    paid = [(p, t) for p, t in _every_interval(book) if t.seat_unit_amount]
    if not paid:
        return []
    plan, terms = paid[0]
    policy = book.seat_policy
    blocks: list[Block] = [
        Heading(2, "Seat proration"),
        Paragraph(
            "Quotes show full-term seat prices. When the seat count changes during a term, "
            "billing prorates the change to the second:"
        ),
    ]
    if policy.increase is SeatIncrease.PRORATE:
        blocks.append(
            Code(
                "prorated = round_half_up(unitPrice × Δseats × remainingSeconds ÷ termSeconds)"
                "   // rounded once"
            )
        )
    else:
        blocks.append(Paragraph("Seats added during a term are first billed at the renewal."))
    if policy.decrease is SeatDecrease.AT_RENEWAL:
        blocks.append(
            Paragraph(
                "Seats removed during a term stay billed until the renewal (the term's highest "
                "count); the renewal bills the count at that instant."
            )
        )
    else:
        blocks.append(Paragraph("Seats removed during a term are credited the same way."))
    if policy.increase is SeatIncrease.PRORATE:
        blocks.append(_proration_example(book, plan, terms))
    return blocks


def _proration_example(book: PriceBook, plan: str, terms: Terms) -> Block:
    """One seat step priced by billing.pricing.proration, the module seat sync uses."""
    unit = terms.seat_unit_amount or 0
    term = term_period(EXAMPLE_TERM_START, terms.interval, 0)
    added_at = term.period_start + EXAMPLE_ADDED_AFTER[terms.interval]
    remaining = to_unix(term.period_end) - to_unix(added_at)
    amount = prorated_amount(EXAMPLE_SEATS_ADDED, unit, term, added_at)
    price = format_unit_amount(Decimal(unit), book.currency)
    return Paragraph(
        f"Example: {book.plan_display_name(plan)}, {EXAMPLE_SEATS} seats at {price} per seat "
        f"per {terms.interval}, term {term.period_start:%Y-%m-%d} to {term.period_end:%Y-%m-%d} "
        f"({quantity_text(term.seconds)} s). {EXAMPLE_SEATS_ADDED} seats added on "
        f"{added_at:%Y-%m-%d} at 00:00 UTC, {quantity_text(remaining)} s before the renewal: "
        f"`{price} {TIMES} {EXAMPLE_SEATS_ADDED} {TIMES} {quantity_text(remaining)} ÷ "
        f"{quantity_text(term.seconds)} = {format_minor_units(amount, book.currency)}`."
    )


def _examples(book: PriceBook) -> list[Block]:
    if not book.examples:
        return []
    rows = []
    for example in book.examples:
        terms = book.terms(example.plan, example.interval)
        charge = quote(terms, example.seat_count, example.usage)
        formulas = "; ".join(
            f"`{line_formula(line, terms, book)}`"
            for line in charge.lines
            if _mentioned(example, line.code)
        )
        rows.append(
            (example.title, formulas, format_minor_units(charge.total_amount, book.currency))
        )
    return [
        Heading(2, "Examples from the business documents"),
        Table(
            "Examples, each quoted by the engine",
            ("Example", "Formula", "Amount"),
            tuple(rows),
            frozenset({2}),
        ),
    ]


def _contracts(book: PriceBook) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Contracts (negotiated terms; not for publication)")]
    for org_id, terms in contract_terms(book):
        note = str(book.contracts[org_id].get("note", ""))
        seats = EXAMPLE_SEATS if terms.has_seats else None
        usage = example_usage(terms)
        blocks += [
            Heading(3, f"Contract `{org_id}` ({book.plan_display_name(terms.plan)})"),
            Bullets(
                tuple(
                    filter(None, [note, _terms_seat_text(book, terms), _minimum_text(book, terms)])
                )
            ),
            _allowance_table(book, terms, f"{org_id}: included per month and unit prices"),
            Paragraph(f"Worked example: {_inputs_text(book, seats, usage)}."),
            quote_table(book, terms, quote(terms, seats, usage), f"{org_id}: worked example"),
        ]
    return blocks


# --------------------------------------------------------------------------- pieces


def quote_table(book: PriceBook, terms: Terms, charge: Charge, caption: str) -> Table:
    """A quote's lines with the formula of each, and the total."""
    rows = [
        (r.name, r.quantity, r.included, r.billable, r.unit_price, r.amount_text, f"`{r.formula}`")
        for r in quote_rows(book, terms, charge)
    ]
    total = format_minor_units(charge.total_amount, book.currency)
    rows.append(("Total", "", "", "", "", total, ""))
    headers = ("Line", "Quantity", "Included", "Billable", "Unit price", "Amount", "Formula")
    return Table(caption, headers, tuple(rows), frozenset({1, 2, 3, 5}))


def _price_text(book: PriceBook, terms: Terms, meter: Meter) -> str:
    """The unit price beyond the allowance, or every tier of a graduated price."""
    price = terms.meters[meter]
    definition = book.meter_definitions[meter]
    if not is_simple(price):
        return meter_formula(price, definition, book.currency)
    return unit_price_text(price, price.tiers[-1].unit_amount_decimal, definition, book.currency)


def _allowance_table(book: PriceBook, terms: Terms, caption: str) -> Table:
    rows = tuple(
        (
            book.meter_definitions[meter].display_name,
            quantity_text(price.included),
            _price_text(book, terms, meter),
        )
        for meter, price in terms.meters.items()
    )
    return Table(caption, ("Meter", "Included per month", "Unit price"), rows, frozenset({1}))


def _seat_text(book: PriceBook, plan: str) -> str:
    all_terms = [book.terms(plan, interval) for interval in book.plan_intervals(plan)]
    return _terms_seat_text(book, *(terms for terms in all_terms if terms.has_seats))


def _terms_seat_text(book: PriceBook, *all_terms: Terms) -> str:
    """`Seats: $9.00 per seat per year, billed upfront.` (each interval offered)."""
    prices = [
        f"{format_minor_units(t.seat_unit_amount or 0, book.currency)} per seat per {t.interval}"
        for t in all_terms
        if t.has_seats
    ]
    if not prices:
        return "No seats: usage only."
    return f"Seats: {' or '.join(prices)}, billed upfront for each term."


def _minimum_text(book: PriceBook, terms: Terms) -> str:
    if not terms.minimum_amount:
        return ""
    minimum = format_minor_units(terms.minimum_amount, book.currency)
    return f"Monthly minimum of the usage charge: {minimum}."


def _inputs_text(book: PriceBook, seats: int | None, usage: Mapping[Meter, Decimal]) -> str:
    parts = [f"{seats} seats"] if seats is not None else []
    parts += [
        f"{quantity_text(quantity)} {book.meter_definitions[meter].unit}s"
        for meter, quantity in usage.items()
    ]
    return ", ".join(parts) + " in a month" if usage else ", ".join(parts)


def _mentioned(example: BookExample, code: str) -> bool:
    """The lines an example is about: its meters, its seats, and any minimum top-up."""
    if code == SEATS:
        return example.seat_count is not None
    return code == MINIMUM or Meter(code) in example.usage


def _all_terms(book: PriceBook, contracts: bool) -> Iterator[tuple[str, Terms]]:
    """Every plan's list terms (then every contract's), labelled for a reader."""
    for plan, terms in list_terms(book):
        yield f"{book.plan_display_name(plan)} (`{plan}`)", terms
    if contracts:
        for org_id, terms in contract_terms(book):
            yield f"contract `{org_id}`", terms


def _every_interval(book: PriceBook) -> Iterator[tuple[str, Terms]]:
    """Each plan's terms at every interval it is offered with, yearly first."""
    found = [(plan, book.terms(plan, i)) for plan in book.plans for i in book.plan_intervals(plan)]
    yield from sorted(found, key=lambda item: item[1].interval is not Interval.YEAR)

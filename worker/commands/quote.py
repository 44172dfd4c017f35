"""`billing quote`: the pricing calculator over a price book (no database, no Stripe)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from billing.core.meters import Interval, Meter
from billing.core.money import format_decimal, format_minor_units, parse_decimal
from billing.pricing.book import PriceBook
from billing.pricing.charge import Charge, ChargeLine, quote
from worker.commands.common import CliError, decimal_json, load_book_or_fail
from worker.settings import get_settings


def parse_usage(pairs: list[str]) -> dict[Meter, Decimal]:
    """`METER=QTY` pairs to quantities; names the bad pair on error."""
    usage: dict[Meter, Decimal] = {}
    for pair in pairs:
        code, sep, text = pair.partition("=")
        if not sep:
            raise CliError(f"--usage {pair!r}: expected METER=QUANTITY")
        if code not in set(Meter):
            known = ", ".join(m.value for m in Meter)
            raise CliError(f"--usage {pair!r}: unknown meter {code!r} (known: {known})")
        try:
            quantity = parse_decimal(text)
        except ValueError:
            raise CliError(f"--usage {pair!r}: quantity {text!r} is not a number") from None
        if quantity < 0:
            raise CliError(f"--usage {pair!r}: quantity must not be negative")
        if Meter(code) in usage:
            raise CliError(f"--usage {pair!r}: meter {code!r} given twice")
        usage[Meter(code)] = quantity
    return usage


def charge_json(book: PriceBook, plan: str, interval: Interval, charge: Charge) -> dict[str, Any]:
    return {
        "book": book.name,
        "plan": plan,
        "interval": interval.value,
        "currency": charge.currency,
        "lines": [line_json(line) for line in charge.lines],
        "total": charge.total_amount,
    }


def line_json(line: ChargeLine) -> dict[str, Any]:
    return {
        "code": line.code,
        "quantity": decimal_json(line.quantity),
        "included": decimal_json(line.included),
        "billable": decimal_json(line.billable),
        "unit_amount_decimal": format_decimal(line.unit_amount_decimal),
        "amount": line.amount,
    }


def render_table(book: PriceBook, plan: str, interval: Interval, charge: Charge) -> Table:
    basis = f"seats per {interval}, usage per month" if charge.line("seats") else "per month"
    table = Table(title=f"{book.name} · {book.plan_display_name(plan)} · {basis}")
    for header in ("line", "quantity", "included", "billable", "unit price (¢)", "amount"):
        table.add_column(header, justify="left" if header == "line" else "right")
    for line in charge.lines:
        unit = format_decimal(line.unit_amount_decimal)
        if line.per != 1:
            unit = f"{unit} / {line.per:,}"
        name = line.code
        if line.code in {m.value for m in book.meter_definitions}:
            name = book.meter_definitions[Meter(line.code)].display_name
        table.add_row(
            name,
            f"{line.quantity:,}",
            f"{line.included:,}",
            f"{line.billable:,}",
            unit,
            format_minor_units(line.amount, charge.currency),
        )
    table.add_section()
    table.add_row("total", "", "", "", "", format_minor_units(charge.total_amount, charge.currency))
    return table


def quote_command(
    plan: Annotated[str, typer.Option("--plan", help="Plan code, e.g. free, team, payg.")],
    book_name: Annotated[
        str | None,
        typer.Option(
            "--book", help="Bundled book name or path to a TOML book [default: BILLING_BOOK]."
        ),
    ] = None,
    interval: Annotated[
        str | None,
        typer.Option(
            "--interval", help="Seat interval: month or year [default: the plan's first]."
        ),
    ] = None,
    seats: Annotated[str | None, typer.Option("--seats", help="Number of seats.")] = None,
    usage: Annotated[
        list[str] | None, typer.Option("--usage", help="METER=QUANTITY for one month; repeatable.")
    ] = None,
    contract: Annotated[
        str | None, typer.Option("--contract", help="Price under this org's contract in the book.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Price a plan: full-term seats plus one month of usage (no proration)."""
    book = load_book_or_fail(book_name or get_settings().book)
    if interval is not None and interval not in set(Interval):
        raise CliError(f"--interval {interval!r}: must be month or year")
    seat_count: int | None = None
    if seats is not None:
        if not seats.isdigit():
            raise CliError(f"--seats {seats!r}: must be a non-negative whole number")
        seat_count = int(seats)
    quantities = parse_usage(usage or [])
    try:
        terms = book.terms(plan, interval, contract)
        charge = quote(terms, seat_count, quantities)
    except (LookupError, ValueError) as exc:
        raise CliError(str(exc).strip("'\"")) from None
    if as_json:
        typer.echo(json.dumps(charge_json(book, plan, terms.interval, charge)))
    else:
        Console().print(render_table(book, plan, terms.interval, charge))

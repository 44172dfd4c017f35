"""`billing quote`: the pricing calculator over a price book (no database, no Stripe)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from billing.core.meters import Interval, Meter
from billing.core.money import format_decimal, format_minor_units
from billing.pricing.book import PriceBook
from billing.pricing.charge import Charge
from billing.pricing.quote_input import USAGE, QuoteInputError, QuoteRequest, price_request
from billing.pricing.quote_json import quote_json
from worker.commands.common import CliError, load_book_or_fail
from worker.settings import get_settings


def parse_usage(pairs: list[str]) -> dict[str, str]:
    """`METER=QTY` pairs by meter code; the quantities are checked with the other inputs."""
    usage: dict[str, str] = {}
    for pair in pairs:
        code, sep, text = pair.partition("=")
        if not sep:
            raise CliError(f"--usage {pair!r}: expected METER=QUANTITY")
        if not text.strip():
            raise CliError(f"--usage {pair!r}: the quantity is missing")
        if code in usage:
            raise CliError(f"--usage {pair!r}: meter {code!r} given twice")
        usage[code] = text
    return usage


def describe_problems(
    error: QuoteInputError, options: dict[str, str | None], usage: dict[str, str]
) -> str:
    """Every problem on one line, each after the option (and value) it is about."""
    parts = []
    for problem in error.problems:
        field = problem.field or ""
        code = field.removeprefix(f"{USAGE}.")
        if code != field:
            parts.append(f"--usage '{code}={usage.get(code, '')}': {problem.message}")
        else:
            parts.append(f"--{field} {options.get(field)!r}: {problem.message}")
    return "; ".join(parts)


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
    options = {"plan": plan, "interval": interval, "seats": seats, "contract": contract}
    quantities = parse_usage(usage or [])
    try:
        priced = price_request(book, QuoteRequest(**options, usage=quantities))
    except QuoteInputError as exc:
        raise CliError(describe_problems(exc, options, quantities)) from None
    interval_used = priced.terms.interval
    if as_json:
        typer.echo(json.dumps(quote_json(book.name, plan, interval_used, priced.charge)))
    else:
        Console().print(render_table(book, plan, interval_used, priced.charge))

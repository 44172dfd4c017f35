"""`billing book show` and `billing book formulas`: what a price book offers, and how it prices."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from billing.core.money import format_decimal, format_minor_units
from billing.pricing.book import MeterPrice, PriceBook, Terms
from billing.pricing.document import html_page
from billing.pricing.formulas import formulas_html, formulas_markdown
from worker.commands.common import load_book_or_fail
from worker.settings import get_settings

book_app = typer.Typer(name="book", help="Price books.", no_args_is_help=True)


def book_json(book: PriceBook) -> dict[str, Any]:
    """The book as one JSON object: amounts in minor units, unit prices as decimal strings."""
    return {
        "book": book.name,
        "source": book.source,
        "currency": book.currency,
        "default_plan": book.default_plan,
        "meters": [
            {"code": d.meter.value, "display_name": d.display_name, "unit": d.unit}
            for d in book.meter_definitions.values()
        ],
        "plans": [
            {"plan": plan, "display_name": book.plan_display_name(plan), **_terms_json(book, plan)}
            for plan in book.plans
        ],
        "contracts": [
            {"org": org_id, **_terms_json(book, str(raw["plan"]), org_id)}
            for org_id, raw in book.contracts.items()
        ],
    }


def _terms_json(book: PriceBook, plan: str, org_id: str | None = None) -> dict[str, Any]:
    """Seat prices per interval offered; meters and minimum (usage is monthly, one set)."""
    if org_id is not None:
        all_terms = [book.terms(plan, None, org_id)]  # a contract has one interval
    else:
        all_terms = [book.terms(plan, interval) for interval in book.plan_intervals(plan)]
    terms = all_terms[0]
    return {
        "plan": plan,
        "seats": [
            {"interval": t.interval.value, "seat_unit_amount": t.seat_unit_amount}
            for t in all_terms
            if t.has_seats
        ],
        "minimum_amount": terms.minimum_amount,
        "meters": [_meter_json(price) for price in terms.meters.values()],
        "quotas": [
            {"quota": q.quota.value, "limit": q.limit, "mode": q.mode.value}
            for q in terms.quotas.values()
        ],
    }


def _meter_json(price: MeterPrice) -> dict[str, Any]:
    return {
        "meter": price.meter.value,
        "included": price.included,
        "per": price.per,
        "tiers": [
            {
                "up_to": tier.up_to,
                "unit_amount_decimal": format_decimal(tier.unit_amount_decimal),
                "flat_amount": tier.flat_amount,
            }
            for tier in price.tiers
        ],
    }


def render_book(book: PriceBook) -> Table:
    """One row per plan (or contract) and meter: seat prices, allowance, tiers, minimum."""
    table = Table(
        title=f"price book {book.name} · {book.currency} · default plan {book.default_plan}"
    )
    for header in ("plan", "seats", "meter", "included", "price", "monthly minimum"):
        table.add_column(header, justify="right" if header == "included" else "left")
    rows: list[tuple[str, list[Terms]]] = [
        (
            f"{book.plan_display_name(plan)} ({plan})",
            [book.terms(plan, interval) for interval in book.plan_intervals(plan)],
        )
        for plan in book.plans
    ]
    rows += [
        (f"contract {org_id} ({raw['plan']})", [book.terms(str(raw["plan"]), None, org_id)])
        for org_id, raw in book.contracts.items()
    ]
    for label, all_terms in rows:
        terms = all_terms[0]
        seats = ", ".join(
            f"{format_minor_units(t.seat_unit_amount or 0, book.currency)} / {t.interval.value}"
            for t in all_terms
            if t.has_seats
        )
        minimum = format_minor_units(terms.minimum_amount, book.currency)
        prices: list[MeterPrice | None] = [*terms.meters.values()] or [None]  # a plan, no meters
        for index, price in enumerate(prices):
            first = index == 0
            meter, included, text = "—", "", ""
            if price is not None:
                definition = book.meter_definitions[price.meter]
                meter = f"{definition.display_name} ({definition.unit})"
                included = f"{price.included:,}"
                text = _price_text(price, definition.unit)
            table.add_row(
                label if first else "",
                (seats or "no seats") if first else "",
                meter,
                included,
                text,
                minimum if first else "",
            )
        table.add_section()
    return table


def _price_text(price: MeterPrice, unit: str) -> str:
    """`2¢ / message`, `13¢ / 3,600 second`, or each charged tier with its bound."""
    per = f"{price.per:,} {unit}" if price.per != 1 else unit
    charged = [
        (lower, tier)
        for lower, tier in zip((0, *(t.up_to or 0 for t in price.tiers)), price.tiers, strict=False)
        if tier.unit_amount_decimal or tier.flat_amount
    ]
    if not charged:
        return "free"
    parts = []
    for lower, tier in charged:
        rate = f"{format_decimal(tier.unit_amount_decimal)}¢ / {per}"
        if tier.flat_amount:
            rate += f" + {tier.flat_amount}¢ flat"
        if len(charged) == 1 and tier.up_to is None:
            parts.append(rate)  # beyond the allowance (the "included" column)
        elif tier.up_to is None:
            parts.append(f"{rate} above {lower:,}")
        else:
            parts.append(f"{rate} to {tier.up_to:,}")
    return "; ".join(parts)


@book_app.command("show")
def show_command(
    book_name: Annotated[
        str | None,
        typer.Option(
            "--book", help="Bundled book name or path to a TOML book [default: BILLING_BOOK]."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """List the book's plans, seat intervals and prices, meters, units, tiers and minimums."""
    book = load_book_or_fail(book_name or get_settings().book)
    if as_json:
        typer.echo(json.dumps(book_json(book)))
    else:
        Console().print(render_book(book))


class DocumentFormat(StrEnum):
    MARKDOWN = "markdown"
    HTML = "html"


@book_app.command("formulas")
def formulas_command(
    book_name: Annotated[
        str | None,
        typer.Option(
            "--book", help="Bundled book name or path to a TOML book [default: BILLING_BOOK]."
        ),
    ] = None,
    output_format: Annotated[
        DocumentFormat, typer.Option("--format", help="markdown, or a standalone HTML page.")
    ] = DocumentFormat.MARKDOWN,
    contracts: Annotated[
        bool, typer.Option("--contracts", help="Add each contract's negotiated terms (private).")
    ] = False,
) -> None:
    """The formula document: per meter and plan the formula, prices and worked examples, the
    book's own examples, the minimum commitment and seat proration (the same as /pricing/formulas
    without --contracts)."""
    book = load_book_or_fail(book_name or get_settings().book)
    if output_format is DocumentFormat.HTML:
        title = f"Pricing formulas: the {book.name} price book"
        typer.echo(html_page(title, formulas_html(book, contracts=contracts)), nl=False)
    else:
        typer.echo(formulas_markdown(book, contracts=contracts), nl=False)

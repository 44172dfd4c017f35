"""`billing ingest` and `billing preview`: load ledger events, show an org's expected invoice."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlmodel import Session

from billing.core.meters import Meter
from billing.core.money import format_decimal, format_minor_units
from billing.core.periods import Period, PeriodError, add_months, isoformat_z, month_period
from billing.ledger.expected_invoice import ExpectedInvoice, ExpectedLine, UnknownOrgError
from billing.ledger.formats import EVENT_TYPES
from billing.ledger.ingest import ConcurrentIngestError, Ingestor, IngestOutcome
from billing.ledger.plan_timeline import invoice_periods as invoice_periods_of
from billing.ledger.plan_timeline import schedule_text, subscriptions
from billing.ledger.queries import expected_invoice as compute_expected_invoice
from billing.pricing.book import PriceBookError, UnknownTermsError
from billing.pricing.book_cache import BookCache
from models.db import unit_of_work
from worker import clock, composition
from worker.commands.common import CliError, decimal_json
from worker.settings import get_settings

PROGRESS_MIN_LINES = 20_000  # smaller files finish before a progress bar would help


def _read_lines(source: str) -> list[str]:
    if source == "-":
        return sys.stdin.read().splitlines()
    path = Path(source)
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CliError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{source}: cannot read: {exc}") from None


def ingest_command(
    source: Annotated[str, typer.Argument(metavar="FILE", help="JSON Lines file, or - for stdin.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Store org, seats, usage and resources events (JSON Lines); all or nothing per file."""
    settings = get_settings()
    lines = _read_lines(source)
    engine = composition.database(settings)
    stderr = Console(stderr=True)
    show_progress = len(lines) >= PROGRESS_MIN_LINES and not as_json
    with (
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
            disable=not show_progress,
        ) as progress,
        unit_of_work(engine) as session,
    ):
        tasks: dict[str, Any] = {}

        def report(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(phase, total=total)
            progress.update(tasks[phase], completed=done)

        try:
            outcome = Ingestor(session, default_book=settings.book).ingest(
                lines, clock.now(settings), report
            )
        except (PriceBookError, ConcurrentIngestError) as exc:
            raise CliError(str(exc)) from None  # nothing stored: the unit of work rolls back
    for error in outcome.errors:
        typer.echo(f"{source}: {error}", err=True)
    if as_json:
        typer.echo(json.dumps(_outcome_json(outcome)))
    elif outcome.ok:
        Console().print(_outcome_table(outcome))
    if not outcome.ok:
        typer.echo(
            f"billing: {len({e.line for e in outcome.errors})} invalid line(s); nothing stored",
            err=True,
        )
        raise typer.Exit(code=1)


def _outcome_json(outcome: IngestOutcome) -> dict[str, Any]:
    return {
        "stored": dict(outcome.stored),
        "duplicates": dict(outcome.duplicates),
        "errors": [
            {"line": error.line, "field": error.field, "problem": error.problem}
            for error in outcome.errors
        ],
    }


def _outcome_table(outcome: IngestOutcome) -> Table:
    table = Table(title="ingested")
    for header in ("type", "stored", "duplicates"):
        table.add_column(header, justify="left" if header == "type" else "right")
    for kind in EVENT_TYPES:
        table.add_row(kind, f"{outcome.stored[kind]:,}", f"{outcome.duplicates[kind]:,}")
    return table


def preview_command(
    org_id: Annotated[str, typer.Option("--org", help="Org id as the product names it.")],
    period_text: Annotated[
        str | None, typer.Option("--period", help="Calendar month, YYYY-MM (UTC).")
    ] = None,
    invoice_periods: Annotated[
        bool,
        typer.Option(
            "--invoice-periods",
            help="The org's real invoice periods (anchored at each subscription), each with "
            "its expected invoice, instead of one calendar month.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The expected invoice of an org from the local ledger: one calendar month (--period), or
    every invoice period of its subscriptions (--invoice-periods), and what is scheduled."""
    if (period_text is None) == (not invoice_periods):
        raise CliError("give either --period YYYY-MM or --invoice-periods")
    settings = get_settings()
    now = clock.now(settings)
    books = BookCache()
    with unit_of_work(composition.database(settings)) as session:
        scheduled = schedule_text(session, org_id, now, books)
        if invoice_periods:
            subs = subscriptions(session, org_id)
            if not subs:
                raise CliError(f"unknown org {org_id!r}")
            periods = invoice_periods_of(subs, add_months(now, 1))
        else:
            try:
                periods = [month_period(str(period_text))]
            except PeriodError as exc:
                raise CliError(f"--period: {exc}") from None
        invoices = [_expected(session, org_id, period, books) for period in periods]
    if as_json:
        found = [invoice_json(invoice) for invoice in invoices]
        payload: Any = found[0] if period_text is not None else {"invoices": found}
        if period_text is None or scheduled:
            payload = {**payload, "scheduled": scheduled}
        typer.echo(json.dumps(payload))
        return
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 140)
    for invoice in invoices:
        console.print(_invoice_table(invoice))
    if scheduled:
        console.print(f"scheduled: {scheduled}")


def _expected(session: Session, org_id: str, period: Period, books: BookCache) -> ExpectedInvoice:
    """The org's expected invoice for `period` (a clear error when it has none)."""
    try:
        return compute_expected_invoice(session, org_id, period, books)
    except UnknownOrgError as exc:
        raise CliError(exc.args[0]) from None
    except (UnknownTermsError, PriceBookError) as exc:
        raise CliError(f"org {org_id!r}: {exc}".strip()) from None


def invoice_json(invoice: ExpectedInvoice) -> dict[str, Any]:
    return {
        "org": invoice.org_id,
        "book": invoice.book,
        "plan": invoice.plan,
        "interval": invoice.interval.value,
        "period_start": isoformat_z(invoice.period.period_start),
        "period_end": isoformat_z(invoice.period.period_end),
        "currency": invoice.currency,
        "lines": [_line_json(line) for line in invoice.lines],
        "total": invoice.total_amount,
    }


def _line_json(line: ExpectedLine) -> dict[str, Any]:
    result: dict[str, Any] = {
        "code": line.code,
        "quantity": decimal_json(line.quantity),
        "amount": line.amount,
        "included": decimal_json(line.included),
        "billable": decimal_json(line.billable),
        "unit_amount_decimal": format_decimal(line.unit_amount_decimal),
    }
    if line.per != 1:
        result["per"] = line.per
    if line.period_start is not None and line.period_end is not None:
        result["period_start"] = isoformat_z(line.period_start)
        result["period_end"] = isoformat_z(line.period_end)
    if line.proration_at is not None:
        result["proration_at"] = isoformat_z(line.proration_at)
        result["from_quantity"] = line.from_quantity
        result["to_quantity"] = line.to_quantity
    if line.description:
        result["description"] = line.description
    return result


def _invoice_table(invoice: ExpectedInvoice) -> Table:
    table = Table(
        title=f"{invoice.org_id} · {invoice.period.label()} · {invoice.book}/{invoice.plan}",
        caption="expected invoice from the local ledger",
    )
    for header in ("line", "quantity", "included", "billable", "unit price (¢)", "amount", "note"):
        table.add_column(header, justify="left" if header in ("line", "note") else "right")
    meter_codes = {meter.value for meter in Meter}
    for line in invoice.lines:
        unit = format_decimal(line.unit_amount_decimal)
        if line.per != 1:
            unit = f"{unit} / {line.per:,}"
        note = ""
        if line.proration_at is not None and line.period_end is not None:
            note = f"{line.from_quantity}→{line.to_quantity} from {isoformat_z(line.proration_at)}"
        elif line.period_start is not None and line.period_end is not None:
            note = f"term {line.period_start.date()} – {line.period_end.date()}"
        table.add_row(
            line.code,
            f"{line.quantity:,}",
            f"{line.included:,}" if line.code in meter_codes else "",
            f"{line.billable:,}",
            unit,
            format_minor_units(line.amount, invoice.currency),
            note,
        )
    table.add_section()
    table.add_row(
        "total", "", "", "", "", format_minor_units(invoice.total_amount, invoice.currency), ""
    )
    return table

"""`billing demo`: the main job offline — a real month of invoicing for N orgs."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from billing.core.money import format_minor_units
from billing.core.periods import PeriodError, month_period, month_period_of
from worker import clock
from worker.commands.common import CliError

if TYPE_CHECKING:
    from worker.demo import DemoResult


def demo_command(
    orgs: Annotated[int, typer.Option("--orgs", min=1, max=5000, help="How many orgs.")] = 50,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulated month.")] = 7,
    period: Annotated[
        str | None,
        typer.Option("--period", help="Month to simulate, YYYY-MM [default: last month]."),
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--workdir", help="Where the demo's SQLite database goes [default: a new temp dir]."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run a month of invoicing offline: emulator, embedded database, catalog sync, orgs,
    seat changes and usage, month close, Stripe's drafts and finals, reconciliation."""
    from worker.demo import default_workdir, run_demo

    try:
        month = (
            month_period(period)
            if period
            else month_period_of(month_period_of(clock.now()).period_start - timedelta(days=1))
        )
    except PeriodError as exc:
        raise CliError(str(exc)) from None
    console = Console(stderr=True)
    directory = workdir or default_workdir()
    directory.mkdir(parents=True, exist_ok=True)
    result = run_demo(
        orgs,
        seed,
        month,
        workdir=directory,
        report=(lambda _text: None) if as_json else console.print,
        show_progress=not as_json,
    )
    if as_json:
        typer.echo(json.dumps(result.as_json()))
        return
    Console().print(summary_table(result, f"billing demo · {month.label()} · seed {seed}"))
    Console().print(verdict(result))
    database = directory / "billing-demo.db"
    console.print(
        f"database kept at {database}; browse it with:\n"
        f"  BILLING_DATABASE_URL=sqlite:///{database} .venv/bin/billing reconciliations list"
    )


def summary_table(result: DemoResult, title: str) -> Table:
    table = Table(title=title)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("orgs", str(result.orgs))
    for plan, count in sorted(result.plans.items()):
        table.add_row(f"  {plan}", str(count))
    table.add_row("invoices (finalized)", str(result.invoices))
    table.add_row("invoiced in total", format_minor_units(result.invoiced_amount, "usd"))
    table.add_row("meter events sent", str(result.meter_events_sent))
    table.add_row("Stripe requests", str(result.stripe_requests))
    for status, count in result.reconciliations.items():
        table.add_row(f"reconciliations {status}", str(count))
    table.add_row("seconds", str(result.seconds))
    return table


def verdict(result: DemoResult) -> str:
    """One line a reader can act on: is every invoice what the ledger says?"""
    counts = result.reconciliations
    total = sum(counts.values())
    matched, rounding = counts.get("matched", 0), counts.get("rounding", 0)
    if matched == total:
        return f"{total} invoices, every one equal to the ledger."
    parts = [f"{total} invoices: {matched} equal to the ledger"]
    if rounding:
        parts.append(
            f"{rounding} within a cent (Stripe rounds a proration's credit and debit lines "
            "separately; reconciliation says `rounding`)"
        )
    awaiting = counts.get("awaiting_usage", 0)
    if awaiting:
        parts.append(f"{awaiting} not judged yet (Stripe still counting usage: `awaiting_usage`)")
    others = total - matched - rounding - awaiting
    if others:
        parts.append(
            f"{others} differ from the ledger ({result.held} held as drafts): "
            "see `billing reconciliations list --status mismatched`"
        )
    return "; ".join(parts) + "."

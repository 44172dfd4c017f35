"""`billing reconcile` and `billing reconciliations list|show`: run and read reconciliations."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlmodel import Session

from billing.core.periods import PeriodError, month_period
from billing.reconciliation.match import Status
from billing.reconciliation.queries import (
    get_reconciliation,
    list_reconciliations,
    reconciliation_json,
    view_json,
)
from worker import clock, composition, jobs
from worker.commands.common import CliError

reconciliations_app = typer.Typer(
    help="Stored reconciliation results (latest per invoice).", no_args_is_help=True
)


def reconcile_command(
    invoice: Annotated[str | None, typer.Option("--invoice", help="Stripe invoice id.")] = None,
    period_text: Annotated[
        str | None, typer.Option("--period", help="Reconcile a month's invoices (YYYY-MM).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Reconcile one Stripe invoice, or every invoice of a month, now (no hold)."""
    if (invoice is None) == (period_text is None):
        raise CliError("give exactly one of --invoice ID or --period YYYY-MM")
    now = clock.now()
    try:
        if invoice is not None:
            outcomes = [jobs.reconcile_invoice(invoice, now, trigger="cli")]
        else:
            assert period_text is not None
            outcomes = jobs.reconcile_period(month_period(period_text), now)
    except PeriodError as exc:
        raise CliError(str(exc)) from None
    rows = [
        {
            "id": o.reconciliation_id,
            "stripe_invoice_id": o.stripe_invoice_id,
            "org_id": o.org_id,
            "status": o.status.value,
        }
        for o in outcomes
    ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table(title="reconciled")
    for header in ("id", "invoice", "org", "status"):
        table.add_column(header)
    for row in rows:
        table.add_row(str(row["id"]), row["stripe_invoice_id"], row["org_id"] or "—", row["status"])
    Console().print(table)


@reconciliations_app.command("list")
def list_command(
    status: Annotated[str | None, typer.Option("--status", help="A status to show.")] = None,
    org_id: Annotated[str | None, typer.Option("--org", help="Org id.")] = None,
    period: Annotated[str | None, typer.Option("--period", help="YYYY-MM.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The latest reconciliation of each invoice, newest first."""
    if status is not None and status not in {s.value for s in Status}:
        raise CliError(f"--status must be one of {', '.join(s.value for s in Status)}")
    with Session(composition.database()) as session:
        rows = [
            reconciliation_json(r)
            for r in list_reconciliations(session, status=status, org_id=org_id, period=period)
        ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table(title="reconciliations")
    for header in (
        "id",
        "status",
        "org",
        "period",
        "invoice",
        "invoice status",
        "expected",
        "stripe",
        "held",
    ):
        table.add_column(header)
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["status"],
            row["org_id"] or "—",
            row["period"] or "—",
            row["stripe_invoice_id"],
            row["invoice_status"] or "",
            _money(row["expected_total_amount"]),
            _money(row["stripe_total_amount"]),
            "held" if row["held"] else "",
        )
    Console().print(table)


@reconciliations_app.command("show")
def show_command(
    reconciliation_id: Annotated[int, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One reconciliation: both sides of each line and its explanation."""
    with Session(composition.database()) as session:
        view = get_reconciliation(session, reconciliation_id)
        data: dict[str, Any] | None = None if view is None else view_json(view)
    if data is None:
        raise CliError(f"no reconciliation {reconciliation_id}")
    if as_json:
        typer.echo(json.dumps(data))
        return
    console = Console()
    console.print(
        f"reconciliation {data['id']}: [bold]{data['status']}[/bold] · invoice "
        f"{data['stripe_invoice_id']} ({data['invoice_status']}, {data['billing_reason']}) · "
        f"org {data['org_id']} · period {data['period']}" + (" · HELD" if data["held"] else "")
    )
    table = Table()
    for header in ("component", "status", "exp qty", "expected", "stripe qty", "stripe", "why"):
        table.add_column(header)
    for line in data["lines"]:
        table.add_row(
            line["component"],
            line["status"],
            line["expected_quantity"] or "—",
            _money(line["expected_amount"]),
            line["stripe_quantity"] or "—",
            _money(line["stripe_amount"]),
            line["explanation"],
        )
    console.print(table)
    for line in data["lines"]:
        expected = line["trace"].get("expected") or {}
        for step in expected.get("steps", []):
            console.print(f"  {line['component']}: {step}")


def _money(amount: int | None) -> str:
    return "—" if amount is None else _cents(amount)


def _cents(amount: int) -> str:
    sign = "-" if amount < 0 else ""
    units, cents = divmod(abs(amount), 100)
    return f"{sign}{units:,}.{cents:02d}"

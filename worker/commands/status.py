"""`billing status [--json]`: the worker at a glance (the same essentials as the /status page)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from billing.core.money import format_minor_units
from worker import clock, composition
from worker.status_view import status_json


def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Last run of each beat entry, the backlogs, held drafts and the last month close."""
    data = status_json(composition.database(), clock.now())
    if as_json:
        typer.echo(json.dumps(data))
        return
    console = Console()
    for table in tables(data):
        console.print(table)


def tables(data: dict[str, Any]) -> list[Table]:
    schedule = Table(title="scheduled tasks (beat)")
    for column in ("entry", "task", "last finished", "outcome", "ms", "runs", "last error"):
        schedule.add_column(column)
    for row in data["schedule"]:
        schedule.add_row(
            row["entry"],
            row["task"],
            row["last_finished_at"] or "never",
            row["last_outcome"] or "—",
            str(row["last_duration_ms"] or "—"),
            str(row["runs"]),
            row["last_error"] or "",
        )
    backlogs = Table(title="backlogs")
    backlogs.add_column("what")
    backlogs.add_column("value", justify="right")
    for name, value in data["backlogs"].items():
        backlogs.add_row(name, str(value))
    for meter, seconds in data["push_lag_seconds"].items():
        backlogs.add_row(f"push_lag_seconds[{meter}]", str(seconds))
    for status, count in data["reconciliations"].items():
        backlogs.add_row(f"invoices {status}", str(count))
    held = Table(title=f"held drafts ({len(data['held_drafts'])})")
    for column in ("invoice", "org", "status", "difference", "held for", "past grace"):
        held.add_column(column)
    for row in data["held_drafts"]:
        held.add_row(
            row["stripe_invoice_id"],
            row["org_id"] or "?",
            row["status"],
            format_minor_units(row["difference_amount"], row["currency"]),
            f"{row['held_seconds'] // 60} min",
            "yes" if row["past_grace_period"] else "no",
        )
    close = Table(title="last month close")
    close.add_column("field")
    close.add_column("value")
    for name, value in (data["last_close"] or {"period": "none recorded"}).items():
        close.add_row(name, "—" if value is None else str(value))
    return [schedule, backlogs, held, close]

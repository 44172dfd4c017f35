"""`billing org change` and `billing org cancel`: an admin's plan change or cancellation.

Each builds the same `org` or `cancel` event a product would send and stores it through the
ledger's one way in (billing.ledger.ingest), so the rules of SPEC §10 apply exactly as to
ingested events: an upgrade at once, a downgrade at the end of the term, a cancellation now or
at term end. The beat's lifecycle job carries it to Stripe; `--apply` runs that job now.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from billing.core.periods import PeriodError, parse_instant
from worker import clock, composition, jobs
from worker.commands.common import CliError
from worker.org_changes import cancel_event, change_event, submit
from worker.settings import get_settings

org_app = typer.Typer(help="Change or cancel an org's subscription (SPEC §10).")

OrgOption = Annotated[str, typer.Option("--org", help="Org id as the product names it.")]
AtOption = Annotated[
    str | None, typer.Option("--at", help="ISO 8601 instant of the request (default: now).")
]
ApplyOption = Annotated[
    bool, typer.Option("--apply", help="Carry it to Stripe now instead of at beat's next tick.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@org_app.command("change")
def change_command(
    org_id: OrgOption,
    plan: Annotated[str, typer.Option("--plan", help="The plan to move to.")],
    interval: Annotated[
        str | None, typer.Option("--interval", help="month or year (default: the plan's).")
    ] = None,
    book: Annotated[str | None, typer.Option("--book", help="Move to another book.")] = None,
    seats: Annotated[int | None, typer.Option("--seats", help="Seats on the new plan.")] = None,
    at: AtOption = None,
    apply: ApplyOption = False,
    as_json: JsonOption = False,
) -> None:
    """Move an org to another plan: an upgrade at once, a downgrade at the end of its term."""
    _submit(
        lambda when: change_event(org_id, plan, when, interval=interval, book=book, seats=seats),
        at,
        apply,
        as_json,
    )


@org_app.command("cancel")
def cancel_command(
    org_id: OrgOption,
    now: Annotated[
        bool,
        typer.Option("--now", help="End it at once (a final invoice, unused seats credited)."),
    ] = False,
    at: AtOption = None,
    apply: ApplyOption = False,
    as_json: JsonOption = False,
) -> None:
    """Cancel an org's subscription at the end of its term (or --now)."""
    _submit(lambda when: cancel_event(org_id, when, now=now), at, apply, as_json)


def _submit(
    make: Callable[[datetime], dict[str, Any]], at: str | None, apply: bool, as_json: bool
) -> None:
    settings = get_settings()
    received = clock.now(settings)
    try:
        instant = received if at is None else parse_instant(at)
    except PeriodError as exc:
        raise CliError(f"--at: {exc}") from None
    event = make(instant)
    org_id = str(event["org"])
    engine = composition.database(settings)
    change = submit(engine, settings.book, event, received)
    if change.errors:  # refused as an ingested line would be: exit 1, nothing stored
        for error in change.errors:
            typer.echo(f"billing: org {org_id!r}: {error.field}: {error.problem}", err=True)
        raise typer.Exit(code=1)
    applied = jobs.apply_lifecycle(org_id, received, settings=settings) if apply else []
    if as_json:
        typer.echo(json.dumps({**change.as_json(), "applied": applied}))
        return
    table = Table(title=f"{org_id}: plan ledger")
    for header in ("from", "plan", "interval", "asked at"):
        table.add_column(header)
    for row in change.plans:
        table.add_row(row["at"], row["plan"] or "canceled", row["interval"], row["requested_at"])
    console = Console()
    console.print(table)
    console.print(f"scheduled: {change.scheduled}" if change.scheduled else "nothing scheduled")
    for step in applied:
        console.print(f"stripe: {step['action']} {step['detail']}".rstrip())

"""`billing credit grant` and `billing credit list`: support's goodwill credits and each org's
credit ledger (granted, applied per invoice, remaining, lapsed).

A grant is a `credit` event dated now, stored through the same ingestion as `billing ingest`
(billing.ledger.goodwill), so the rules are the same on every surface. `--id`
names the credit: reusing an id is refused, which makes a retried command safe. Refusals
(unknown org, an amount not above 0, an expiry already past, an id already used) print one line
and exit 1 with nothing stored.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlmodel import Session

from billing.core.money import format_minor_units
from billing.core.periods import PeriodError, isoformat_z, parse_instant
from billing.ledger.credit_ledger import CreditLedger, credit_ledger
from billing.ledger.goodwill import GoodwillGrant, grant_goodwill
from models.db import unit_of_work
from models.ledger import Org
from worker import clock, composition
from worker.settings import get_settings

EXIT_REFUSED = 1
_OPTION_OF = {
    "id": "--id",
    "org": "--org",
    "amount": "--amount",
    "expires_at": "--expires",
    "reason": "--reason",
}

credit_app = typer.Typer(
    help="Credits: grant a goodwill credit, list an org's credits and their balances.",
    no_args_is_help=True,
)


def _refuse(message: str) -> typer.Exit:
    typer.echo(f"billing: error: {message}; nothing stored", err=True)
    return typer.Exit(code=EXIT_REFUSED)


@credit_app.command("grant")
def grant_command(
    org_id: Annotated[str, typer.Option("--org", help="Org id as the product names it.")],
    amount: Annotated[int, typer.Option("--amount", help="Credit in cents (3000 = $30.00).")],
    reason: Annotated[str, typer.Option("--reason", help="Why, as support will read it.")],
    expires: Annotated[
        str | None, typer.Option("--expires", help="ISO 8601 instant; none: never expires.")
    ] = None,
    credit_id: Annotated[
        str | None, typer.Option("--id", help="The credit's id (default: support:ORG:UNIX_NOW).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Grant ORG a credit of CENTS now: it pays usage and the minimum, never seats."""
    settings = get_settings()
    expires_at = None
    if expires is not None:
        try:
            expires_at = parse_instant(expires)
        except PeriodError as exc:
            raise _refuse(f"--expires: {exc}") from None
    grant = GoodwillGrant(org_id, amount, reason, expires_at, credit_id)
    with unit_of_work(composition.database(settings)) as session:
        granted = grant_goodwill(session, grant, clock.now(settings), default_book=settings.book)
    if isinstance(granted, list):
        raise _refuse(
            "; ".join(f"{_OPTION_OF.get(r.field, r.field)}: {r.problem}" for r in granted)
        )
    if as_json:
        typer.echo(json.dumps(granted))
    else:
        until = f", expires {granted['expires_at']}" if expires_at else ""
        typer.echo(
            f"granted {granted['id']}: {format_minor_units(amount, 'usd')} to {org_id}{until}"
        )


@credit_app.command("list")
def list_command(
    org_id: Annotated[str, typer.Option("--org", help="Org id as the product names it.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The org's credits: each grant's balance, and the credit applied to each invoice."""
    settings = get_settings()
    with Session(composition.database(settings)) as session:
        if session.get(Org, org_id) is None:
            raise _refuse(f"--org: unknown org {org_id!r}")
        ledger = credit_ledger(session.connection(), org_id, clock.now(settings))
    if as_json:
        typer.echo(json.dumps(ledger.as_json()))
        return
    console = Console()
    console.print(_grants_table(ledger))
    if ledger.applied:
        console.print(_applied_table(ledger))
    console.print(
        f"{org_id}: granted {_money(ledger.granted_amount)}, remaining "
        f"{_money(ledger.remaining_amount)}, lapsed {_money(ledger.lapsed_amount)}"
    )


def _grants_table(ledger: CreditLedger) -> Table:
    table = Table(title=f"credits of {ledger.org_id}", title_justify="left")
    for name in ("id", "granted", "at", "expires", "reason", "applied", "remaining", "status"):
        table.add_column(name, justify="right" if name in ("granted", "applied") else "left")
    for grant in ledger.grants:
        table.add_row(
            grant.grant_id,
            _money(grant.amount),
            isoformat_z(grant.at),
            isoformat_z(grant.expires_at) if grant.expires_at else "never",
            grant.reason,
            _money(grant.applied_amount),
            _money(grant.remaining_amount),
            grant.status.value
            + (f" ({_money(grant.lapsed_amount)})" if grant.lapsed_amount else ""),
        )
    return table


def _applied_table(ledger: CreditLedger) -> Table:
    table = Table(title="applied to invoices", title_justify="left")
    for name in ("period", "invoice", "credit", "of usage charge", "grants", "status"):
        table.add_column(name, justify="right" if name.startswith(("credit", "of")) else "left")
    for item in ledger.applied:
        table.add_row(
            f"{isoformat_z(item.period_start_at)[:10]} → {isoformat_z(item.period_end_at)[:10]}",
            item.stripe_invoice_id,
            _money(item.amount),
            _money(item.charge_amount),
            ", ".join(f"{grant} {_money(amount)}" for grant, amount in item.grants.items()),
            item.status,
        )
    return table


def _money(amount: int) -> str:
    return format_minor_units(amount, "usd")

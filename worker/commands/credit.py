"""`billing credit grant` and `billing credit list`: support's goodwill credits and each org's
credit ledger (granted, applied per invoice, remaining, lapsed).

A grant is a `credit` event dated now, stored through the same ingestion as `billing ingest`
(billing.ledger.credit_grants checks it), so the rules are the same on every surface. `--id`
names the credit: reusing an id is refused, which makes a retried command safe. Refusals
(unknown org, an amount not above 0, an expiry already past, an id already used) print one line
and exit 1 with nothing stored.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlmodel import Session, select

from billing.core.money import format_minor_units
from billing.core.periods import PeriodError, isoformat_z, parse_instant, to_unix
from billing.ledger.credit_ledger import CreditLedger, credit_ledger
from billing.ledger.formats import LineError
from billing.ledger.ingest import Ingestor
from models.credits import CreditGrant
from models.db import unit_of_work
from models.ledger import Org
from worker import clock, composition
from worker.settings import get_settings

EXIT_REFUSED = 1
_OPTION_OF = {
    "id": "--id",
    "org": "--org",
    "amount": "--amount",
    "at": "--org",  # a grant is dated now: only the org's first subscription can refuse it
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
    now = clock.now(settings).replace(microsecond=0)
    if expires is not None:
        try:
            expires_at = parse_instant(expires)
        except PeriodError as exc:
            raise _refuse(f"--expires: {exc}") from None
        if expires_at <= now:
            raise _refuse(
                f"--expires: {isoformat_z(expires_at)} is not after now ({isoformat_z(now)})"
            )
    event: dict[str, Any] = {
        "type": "credit",
        "id": credit_id or f"support:{org_id}:{to_unix(now)}",
        "org": org_id,
        "amount": amount,
        "at": isoformat_z(now),
        "reason": reason,
    }
    if expires is not None:
        event["expires_at"] = expires
    with unit_of_work(composition.database(settings)) as session:
        earlier = session.exec(
            select(CreditGrant).where(
                CreditGrant.org_id == org_id, CreditGrant.grant_id == event["id"]
            )
        ).first()
        if earlier is not None:
            raise _refuse(
                f"--id: credit {event['id']!r} was already granted to {org_id!r} on "
                f"{isoformat_z(earlier.at)} ({format_minor_units(earlier.amount, 'usd')})"
            )
        outcome = Ingestor(session, default_book=settings.book).ingest([event], now)
    if not outcome.ok:
        raise _refuse("; ".join(_option_error(error) for error in outcome.errors))
    if as_json:
        typer.echo(json.dumps({k: v for k, v in event.items() if k != "type"}))
    else:
        until = f", expires {expires}" if expires else ""
        typer.echo(f"granted {event['id']}: {format_minor_units(amount, 'usd')} to {org_id}{until}")


def _option_error(error: LineError) -> str:
    problem = error.problem.replace("'id'", "--id")
    return f"{_OPTION_OF.get(error.field, error.field)}: {problem}"


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
        typer.echo(json.dumps(ledger_json(ledger)))
        return
    console = Console()
    console.print(_grants_table(ledger))
    if ledger.applied:
        console.print(_applied_table(ledger))
    console.print(
        f"{org_id}: granted {_money(ledger.granted_amount)}, remaining "
        f"{_money(ledger.remaining_amount)}, lapsed {_money(ledger.lapsed_amount)}"
    )


def ledger_json(ledger: CreditLedger) -> dict[str, Any]:
    """The org's credit ledger as JSON (amounts in cents)."""
    return {
        "org": ledger.org_id,
        "granted": ledger.granted_amount,
        "remaining": ledger.remaining_amount,
        "lapsed": ledger.lapsed_amount,
        "grants": [
            {
                "id": grant.grant_id,
                "amount": grant.amount,
                "at": isoformat_z(grant.at),
                "expires_at": isoformat_z(grant.expires_at) if grant.expires_at else None,
                "reason": grant.reason,
                "applied": grant.applied_amount,
                "remaining": grant.remaining_amount,
                "lapsed": grant.lapsed_amount,
                "status": grant.status.value,
            }
            for grant in ledger.grants
        ],
        "applied": [
            {
                "period_start": isoformat_z(item.period_start_at),
                "period_end": isoformat_z(item.period_end_at),
                "stripe_invoice_id": item.stripe_invoice_id,
                "stripe_invoice_item_id": item.stripe_invoice_item_id,
                "amount": item.amount,
                "charge_amount": item.charge_amount,
                "status": item.status,
                "grants": dict(item.grants),
            }
            for item in ledger.applied
        ],
    }


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

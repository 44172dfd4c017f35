"""`billing org change` and `billing org cancel`: an admin's plan change or cancellation.

Each builds the same `org` or `cancel` event a product would send and stores it through the
ledger's one way in (billing.ledger.ingest), so the rules of SPEC §10 apply exactly as to
ingested events: an upgrade at once, a downgrade at the end of the term, a cancellation now or
at term end. The beat's lifecycle job carries it to Stripe; `--apply` runs that job now.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlmodel import col, select

from billing.core.periods import PeriodError, isoformat_z, parse_instant
from billing.ledger.ingest import Ingestor
from billing.ledger.plan_timeline import schedule_text
from billing.pricing.book_cache import BookCache
from billing.pricing.lifecycle import NO_PLAN
from models.db import unit_of_work
from models.ledger import OrgPlanChange
from worker import clock, composition, jobs
from worker.commands.common import CliError
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
    event: dict[str, Any] = {"type": "org", "org": org_id, "plan": plan}
    event |= {k: v for k, v in {"interval": interval, "book": book, "seats": seats}.items() if v}
    _submit(event, at, apply, as_json)


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
    event = {"type": "cancel", "org": org_id, "when": "now" if now else "term_end"}
    _submit(event, at, apply, as_json)


def _submit(event: dict[str, Any], at: str | None, apply: bool, as_json: bool) -> None:
    settings = get_settings()
    received = clock.now(settings)
    try:
        instant = received if at is None else parse_instant(at)
    except PeriodError as exc:
        raise CliError(f"--at: {exc}") from None
    event["at"] = isoformat_z(instant)
    org_id = str(event["org"])
    engine = composition.database(settings)
    with unit_of_work(engine) as session:
        outcome = Ingestor(session, default_book=settings.book).ingest([event], received)
        if not outcome.ok:  # refused as an ingested line would be: exit 1, nothing stored
            session.rollback()
            for error in outcome.errors:
                typer.echo(f"billing: org {org_id!r}: {error.field}: {error.problem}", err=True)
            raise typer.Exit(code=1)
    applied = jobs.apply_lifecycle(org_id, received, settings=settings) if apply else []
    with unit_of_work(engine) as session:
        rows = session.exec(
            select(OrgPlanChange)
            .where(OrgPlanChange.org_id == org_id)
            .order_by(col(OrgPlanChange.at))
        ).all()
        timeline = [_row_json(row) for row in rows]
        scheduled = schedule_text(session, org_id, received, BookCache())
    result = {"org": org_id, "plans": timeline, "scheduled": scheduled, "applied": applied}
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title=f"{org_id}: plan ledger")
    for header in ("from", "plan", "interval", "asked at"):
        table.add_column(header)
    for row in timeline:
        table.add_row(row["at"], row["plan"] or "canceled", row["interval"], row["requested_at"])
    console = Console()
    console.print(table)
    console.print(f"scheduled: {scheduled}" if scheduled else "nothing scheduled")
    for step in applied:
        console.print(f"stripe: {step['action']} {step['detail']}".rstrip())


def _row_json(row: OrgPlanChange) -> dict[str, Any]:
    return {
        "at": isoformat_z(row.at),
        "book": row.book,
        "plan": None if row.plan == NO_PLAN else row.plan,
        "interval": row.interval or None,
        "requested_at": _iso(row.requested_at),
    }


def _iso(at: datetime | None) -> str:
    return isoformat_z(at) if at else ""

"""`billing quota check` and `billing quota events`: the quota check and its support records."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from billing.core.periods import isoformat_z
from billing.quotas.service import QuotaDecision, QuotaRequestError, parse_quota
from models.quota_records import QuotaEvent
from worker import clock
from worker.commands.common import CliError
from worker.composition import quota_service
from worker.logging import configure_logging
from worker.settings import get_settings

EXIT_DENIED = 1

quota_app = typer.Typer(
    help="Quota checks (tasks per month, tasks per second, environments) and their records.",
    no_args_is_help=True,
)


def decision_json(decision: QuotaDecision) -> dict[str, Any]:
    return {
        "org": decision.org_id,
        "quota": decision.quota.value,
        "amount": decision.amount,
        "allowed": decision.allowed,
        "limit": decision.limit,
        "used": decision.used,
        "remaining": decision.remaining,
        "mode": decision.mode.value,
        "recorded_event": decision.recorded_event,
    }


@quota_app.command("check")
def check_command(
    org_id: Annotated[str, typer.Option("--org", help="Org id as the product names it.")],
    quota_name: Annotated[
        str,
        typer.Option("--quota", help="tasks_per_month, tasks_per_second or environments."),
    ],
    amount: Annotated[int, typer.Option("--amount", min=1, help="Units asked for.")] = 1,
    consume: Annotated[
        bool,
        typer.Option("--consume/--no-consume", help="Count the units when allowed (default)."),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Check (and by default count) a quota now; exit 0 when allowed, 1 when denied."""
    configure_logging(get_settings(), logging.WARNING)  # logs on stderr; stdout is the answer
    try:
        quota = parse_quota(quota_name)
        decision = quota_service().check(org_id, quota, clock.now(), amount=amount, consume=consume)
    except QuotaRequestError as exc:
        raise CliError(f"--{exc.field}: {exc}") from None
    if as_json:
        typer.echo(json.dumps(decision_json(decision)))
    else:
        verdict = "allowed" if decision.allowed else "denied"
        limit = "unlimited" if decision.limit is None else f"{decision.limit:,}"
        typer.echo(
            f"{verdict}: {decision.org_id} {decision.quota.value} "
            f"used {decision.used:,} of {limit} ({decision.mode.value})"
        )
    if not decision.allowed:
        raise typer.Exit(code=EXIT_DENIED)


def event_json(event: QuotaEvent) -> dict[str, Any]:
    return {
        "org": event.org_id,
        "quota": event.quota,
        "period_start": isoformat_z(event.period_start),
        "decision": event.decision,
        "mode": event.mode,
        "limit": event.limit,
        "used": event.used,
        "amount": event.amount,
        "occurrence_count": event.occurrence_count,
        "first_at": isoformat_z(event.first_at),
        "last_at": isoformat_z(event.last_at),
    }


@quota_app.command("events")
def events_command(
    org_id: Annotated[str | None, typer.Option("--org", help="Only this org.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
) -> None:
    """Recorded denials and crossings, newest first: one row per org, quota, month, decision."""
    configure_logging(get_settings(), logging.WARNING)
    events = quota_service().events(org_id)
    if as_json:
        typer.echo(json.dumps([event_json(event) for event in events]))
        return
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 160)
    console.print(_events_table(events))


def _events_table(events: Sequence[QuotaEvent]) -> Table:
    table = Table(title="quota events", caption="denied: hard limit refused; exceeded: soft limit")
    headers = (
        "org",
        "quota",
        "month",
        "decision",
        "mode",
        "limit",
        "used",
        "times",
        "first",
        "last",
    )
    for header in headers:
        table.add_column(
            header, justify="right" if header in ("limit", "used", "times") else "left"
        )
    for event in events:
        table.add_row(
            event.org_id,
            event.quota,
            event.period_start.strftime("%Y-%m"),
            event.decision,
            event.mode,
            f"{event.limit:,}",
            f"{event.used:,}",
            f"{event.occurrence_count:,}",
            isoformat_z(event.first_at),
            isoformat_z(event.last_at),
        )
    return table

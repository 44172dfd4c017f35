"""`billing stripe create-event-destination` and `billing stripe meter-errors`: Stripe's
asynchronous meter error reports (billing.usage.meter_errors)."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlmodel import Session, col, select

from billing.core.errors import BillingError
from billing.stripe_gateway.admin import create_event_destination
from billing.stripe_gateway.thin_events import METER_ERROR_EVENTS
from models.meter_errors import MeterErrorReport
from worker import composition
from worker.commands.common import CliError
from worker.composition import ConfigurationError
from worker.logging import configure_logging
from worker.settings import get_settings


def create_event_destination_command(
    url: Annotated[
        str,
        typer.Option("--url", help="Public URL of the web process's /stripe/thin-events."),
    ],
    name: Annotated[str, typer.Option("--name", help="The destination's name.")] = (
        "billing meter errors"
    ),
) -> None:
    """Create the thin event destination for Stripe's meter error reports; prints its secret
    (set it as BILLING_STRIPE_EVENT_DESTINATION_SECRET)."""
    settings = get_settings()
    configure_logging(settings, logging.WARNING)
    if not url.startswith(("https://", "http://")):
        raise CliError(f"--url must be an http(s) URL, got {url!r}")
    try:
        destination = create_event_destination(
            composition.stripe_gateway(settings),
            name,
            url,
            METER_ERROR_EVENTS,
            idempotency_key=f"event-destination:{url}",
        )
    except (ConfigurationError, BillingError) as exc:
        raise CliError(str(exc)) from None
    typer.echo(f"event destination {destination.stripe_event_destination_id} → {destination.url}")
    typer.echo(f"  events: {', '.join(destination.enabled_events)}")
    typer.echo(f"  export BILLING_STRIPE_EVENT_DESTINATION_SECRET={destination.secret}")


def _json(row: MeterErrorReport) -> dict[str, Any]:
    return {
        "stripe_event_id": row.stripe_event_id,
        "type": row.event_type,
        "code": row.code,
        "error_message": row.error_message,
        "identifier": row.identifier,
        "usage_push_id": row.usage_push_id,
        "org_id": row.org_id,
        "meter": row.meter,
        "period_start_at": None if row.period_start_at is None else row.period_start_at.isoformat(),
        "error_count": row.type_error_count,
        "received_at": row.received_at.isoformat(),
    }


def meter_errors_command(
    org_id: Annotated[str | None, typer.Option("--org", help="Only this org's pushes.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Meter events Stripe accepted, then dropped, and why (newest first)."""
    query = select(MeterErrorReport).order_by(col(MeterErrorReport.id).desc()).limit(limit)
    if org_id is not None:
        query = query.where(MeterErrorReport.org_id == org_id)
    with Session(composition.database()) as session:
        rows = list(session.exec(query))
    if as_json:
        for row in rows:
            typer.echo(json.dumps(_json(row)))
        return
    table = Table(title=f"Stripe meter error reports · {len(rows)} shown")
    for header in ("received", "org", "meter", "push identifier", "code", "message"):
        table.add_column(header)
    for row in rows:
        table.add_row(
            f"{row.received_at:%Y-%m-%d %H:%M}",
            row.org_id or "—",
            row.meter or row.stripe_meter_id or "—",
            row.identifier or "—",
            row.code or "—",
            row.error_message or "",
        )
    Console().print(table)

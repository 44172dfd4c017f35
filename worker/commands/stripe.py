"""`billing stripe …` and `billing stripe-emulator`: catalog sync and the local Stripe emulator."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from billing.setup.catalog import CatalogAction, CatalogSyncReport
from worker import clock
from worker.commands.common import CliError, load_book_or_fail
from worker.commands.meter_errors import create_event_destination_command, meter_errors_command
from worker.composition import ConfigurationError, catalog_sync
from worker.logging import configure_logging
from worker.settings import get_settings

stripe_app = typer.Typer(
    name="stripe",
    help="Stripe objects: catalog sync (products, meters, prices), the meter error reports.",
    no_args_is_help=True,
)

_STYLE = {
    CatalogAction.CREATED: "green",
    CatalogAction.VERIFIED: "dim",
    CatalogAction.DRIFTED: "bold red",
    CatalogAction.REPAIRED: "yellow",
}


def report_json(report: CatalogSyncReport) -> dict[str, Any]:
    return {
        "book": report.book,
        "drift": report.has_drift,
        "counts": {action.value: report.count(action) for action in CatalogAction},
        "objects": [
            {
                "catalog_key": r.catalog_key,
                "kind": r.kind.value,
                "action": r.action.value,
                "stripe_id": r.stripe_id,
                "approximate": r.approximate,
                "note": r.note or None,
                "book_terms": r.book_terms,
                "stripe_terms": r.stripe_terms,
            }
            for r in report.results
        ],
    }


def render_report(report: CatalogSyncReport) -> Table:
    counts = ", ".join(f"{report.count(a)} {a.value}" for a in CatalogAction if report.count(a))
    table = Table(title=f"Stripe catalog · {report.book} · {counts}")
    for header in ("kind", "catalog key", "result", "stripe id", "note"):
        table.add_column(header)
    for r in report.results:
        note = r.note
        if r.action in (CatalogAction.DRIFTED, CatalogAction.REPAIRED):
            note = f"{note}\nbook:   {r.book_terms}\nstripe: {r.stripe_terms}"
        table.add_row(
            r.kind.value,
            r.catalog_key,
            f"[{_STYLE[r.action]}]{r.action.value}[/]",
            r.stripe_id,
            note,
        )
    return table


@stripe_app.command("sync-catalog")
def sync_catalog_command(
    book_name: Annotated[
        str | None,
        typer.Option(
            "--book", help="Bundled book name or path to a TOML book [default: BILLING_BOOK]."
        ),
    ] = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Replace drifted prices with a new version that takes over the lookup key.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create or verify the Stripe products, meters and prices of a book; exit 1 on drift."""
    settings = get_settings()
    configure_logging(settings, logging.WARNING)  # logs on stderr; stdout is the report
    book = load_book_or_fail(book_name or settings.book)
    try:
        report = catalog_sync().sync(book, clock.now(settings), repair=repair)
    except ConfigurationError as exc:
        raise CliError(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report_json(report)))
    else:
        Console().print(render_report(report))
        if report.has_drift:
            typer.echo(
                "billing: drift: Stripe prices differ from the book; "
                "fix with `billing stripe sync-catalog --repair`",
                err=True,
            )
    if report.has_drift:
        raise typer.Exit(1)


def stripe_emulator_command(
    port: Annotated[int, typer.Option("--port", help="TCP port to listen on.")] = 12111,
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    limits: Annotated[
        str,
        typer.Option(
            "--limits",
            help="Stripe's documented rate limits: live (100/s global), sandbox (25/s global), "
            "both with 25/s per endpoint and 1,000/s meter events; or none.",
        ),
    ] = "none",
    rate_limit_rps: Annotated[
        float | None,
        typer.Option(
            "--rate-limit", help="Replace the global requests per second (default: the mode's)."
        ),
    ] = None,
    aggregation_delay: Annotated[
        float,
        typer.Option(
            "--aggregation-delay",
            min=0.0,
            help="Seconds after its receipt before a meter event counts in summaries and "
            "invoices (Stripe aggregates asynchronously); 0 = at once.",
        ),
    ] = 0.0,
) -> None:
    """Run the local Stripe emulator until interrupted (offline demo, tests, benchmarks)."""
    from stripe_emulator import serve
    from stripe_emulator.limits import LIMITS_MODES

    if limits not in LIMITS_MODES:
        raise CliError(f"--limits must be one of {', '.join(LIMITS_MODES)}, got {limits!r}")
    url = f"http://{host}:{port}"
    typer.echo(f"Stripe emulator listening on {url} (Ctrl-C to stop)")
    typer.echo(f"  export BILLING_STRIPE_API_BASE={url}")
    typer.echo(f"  rate limits: {limits}")
    typer.echo(f"  meter aggregation delay: {aggregation_delay:g} s")
    config: dict[str, Any] = {
        "limits": limits,
        "meter_aggregation_delay_seconds": aggregation_delay,
    }
    if rate_limit_rps is not None:
        config["rate_limit_rps"] = rate_limit_rps
    serve(port=port, host=host, **config)


stripe_app.command("create-event-destination")(create_event_destination_command)
stripe_app.command("meter-errors")(meter_errors_command)

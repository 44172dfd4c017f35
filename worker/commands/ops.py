"""`billing worker|beat|db|sync|close`: run the worker, and run or enqueue its jobs by hand."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from billing.core.periods import PeriodError, month_period, parse_instant
from models.db import migrate
from worker import clock, composition, jobs, month_close
from worker.commands.common import CliError, require_org, user_errors
from worker.logging import configure_logging
from worker.settings import get_settings

sync_app = typer.Typer(
    name="sync", help="Admin re-syncs of one org: seats, usage, provisioning.", no_args_is_help=True
)
db_app = typer.Typer(name="db", help="Database schema.", no_args_is_help=True)

NowOption = Annotated[bool, typer.Option("--now", help="Run inline instead of enqueueing.")]
AtOption = Annotated[
    str | None,
    typer.Option(
        "--at", help="Run as of this ISO 8601 instant (a replay or a test clock) [default: now]."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
WaitOption = Annotated[
    float,
    typer.Option("--wait", help="Seconds to wait for an enqueued task's result (0: do not wait)."),
]


def _instant(at: str | None) -> datetime:
    if at is None:
        return clock.now()
    try:
        return parse_instant(at)
    except ValueError as exc:
        raise CliError(f"--at {at!r}: {exc}") from None


def _print(payload: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        typer.echo(json.dumps(payload, default=str))
        return
    table = Table(title=title)
    table.add_column("field")
    table.add_column("value")
    for key, value in payload.items():
        if isinstance(value, list | tuple):
            text = "\n".join(json.dumps(item, default=str) for item in value) or "—"
        else:
            text = str(value)
        table.add_row(key, text)
    Console().print(table)


def _enqueue(task_name: str, args: list[Any], wait: float) -> dict[str, Any]:
    from worker import dispatch
    from worker.celery_app import app
    from worker.composition import redis_client

    if wait > 0:
        # Fail at once (one line) rather than after Celery's 20 attempts to reach its result
        # store.
        redis_client().ping()
    sent = dispatch.enqueue(task_name, args, app=app)
    if sent.kept:
        return {"task_id": sent.task_id, "state": "kept in the outbox until the broker is back"}
    result = app.AsyncResult(sent.task_id)
    if wait <= 0:
        return {"task_id": result.id, "state": "queued"}
    try:
        value = result.get(timeout=wait, propagate=True)
    except TimeoutError:
        return {"task_id": result.id, "state": "still queued or running"}
    return value if isinstance(value, dict) else {"task_id": result.id, "result": value}


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema at BILLING_DATABASE_URL (idempotent); nothing else does."""
    migrate(get_settings().database_url)
    typer.echo("database is at the latest revision")


@sync_app.command("seats")
def sync_seats(
    org: Annotated[str, typer.Option("--org")],
    now: NowOption = False,
    at: AtOption = None,
    wait: WaitOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Converge the org's Stripe seat quantity to the ledger; prints what changed."""
    with user_errors():
        require_org(org)
        if now:
            payload = jobs.outcome_json(jobs.sync_seats(org, _instant(at)))
        else:
            payload = _enqueue("billing.seats.sync_org", [org, at], wait)
    _print(payload, as_json, f"seat sync · {org}")


@sync_app.command("usage")
def sync_usage(
    org: Annotated[str, typer.Option("--org")],
    period: Annotated[
        str | None,
        typer.Option("--period", help="Only usage periods overlapping this month YYYY-MM."),
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Read back what Stripe aggregated.")
    ] = False,
    now: NowOption = False,
    at: AtOption = None,
    wait: WaitOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Push the org's usage totals (and late-usage adjustments); prints what was sent."""
    try:
        within = month_period(period) if period else None
    except PeriodError as exc:
        raise CliError(str(exc)) from None
    with user_errors():
        require_org(org)
        if now:
            outcome = jobs.push_usage(org, _instant(at), verify=verify, within=within)
            payload = jobs.outcome_json(outcome)
        else:
            payload = _enqueue("billing.usage.push_org", [org, at, verify], wait)
    _print(payload, as_json, f"usage push · {org}")


@sync_app.command("org")
def sync_org(
    org: Annotated[str, typer.Option("--org")],
    now: NowOption = False,
    at: AtOption = None,
    wait: WaitOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Create (or find) the org's Stripe customer and subscription."""
    with user_errors():
        require_org(org)
        if now:
            payload = jobs.provision_org(org, _instant(at))
        else:
            payload = _enqueue("billing.orgs.provision", [org, at], wait)
    _print(payload, as_json, f"provisioning · {org}")


def close_command(
    period: Annotated[str, typer.Option("--period", help="The month to close, YYYY-MM.")],
    now: NowOption = False,
    at: AtOption = None,
    chunk_size: Annotated[int, typer.Option("--chunk-size")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Month close: the invoices created since the month ended listed once into the mirror
    (so no push lists its org's invoices), then the final usage push of every provisioned org,
    with progress. Safe to rerun: a push sends only what Stripe does not have."""
    try:
        month_period(period)
    except PeriodError as exc:
        raise CliError(str(exc)) from None
    started = time.monotonic()
    orgs = jobs.provisioned_orgs()
    month_close.start_close(month_period(period), len(orgs), _instant(at))  # chunks record progress
    Console(stderr=True).print(f"sweeping {period}'s invoices into the mirror")
    sweep = month_close.sweep_invoice_mirror(month_period(period), _instant(at))
    chunks = list(jobs.chunks(orgs, chunk_size))
    totals = {"orgs": 0, "meter_events": 0, "adjustments": 0, "failed": 0}
    totals["invoices_swept"] = sweep.invoice_count if sweep else 0
    progress = Progress(
        TextColumn("closing {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=as_json,
    )
    with progress:
        bar = progress.add_task(period, total=len(orgs))
        if now:
            within = month_period(period)
            for chunk in chunks:
                counts = jobs.push_usage_chunk(chunk, _instant(at), within=within)
                _add(totals, counts)
                progress.update(bar, advance=len(chunk))
        else:
            from celery import group

            from worker.tasks.usage import push_chunk

            result = group(push_chunk.s(chunk, at, period) for chunk in chunks).apply_async()
            while not result.ready():
                done = sum(len(c) for c, r in zip(chunks, result.results, strict=True) if r.ready())
                progress.update(bar, completed=done)
                time.sleep(0.5)
            for counts in result.get(propagate=False):
                if isinstance(counts, dict):
                    _add(totals, counts)
                else:
                    totals["failed"] += 1
            progress.update(bar, completed=len(orgs))
    payload = {"period": period, **totals, "seconds": round(time.monotonic() - started, 1)}
    _print(payload, as_json, f"month close · {period}")
    if totals["failed"]:
        raise typer.Exit(1)


def _add(totals: dict[str, int], counts: dict[str, int]) -> None:
    for key, value in counts.items():
        totals[key] = totals.get(key, 0) + int(value)


def worker_command(
    concurrency: Annotated[int, typer.Option("--concurrency", "-c")] = 2,
    loglevel: Annotated[str, typer.Option("--loglevel")] = "info",
) -> None:
    """Run a Celery worker on the broker (BILLING_BROKER_URL, else BILLING_REDIS_URL): prefork,
    acks late, prefetch 1."""
    from worker.celery_app import app

    settings = get_settings()
    composition.database(settings)  # refuse to start on a schema that is behind
    configure_logging(settings)
    app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


def beat_command(
    loglevel: Annotated[str, typer.Option("--loglevel")] = "info",
    schedule: Annotated[
        str,
        typer.Option("--schedule", help="Where beat keeps its schedule (a writable file path)."),
    ] = "celerybeat-schedule",
) -> None:
    """Run the beat scheduler (exactly one per deployment); it answers `celery inspect ping`
    (node celerybeat@HOST) while its scheduler ticks."""
    from worker.celery_app import app

    configure_logging(get_settings())
    app.start(
        ["beat", f"--loglevel={loglevel}", f"--schedule={schedule}", "--enable-remote-control"]
    )

"""`billing simulate FILE`: a timeline of customer events through the real worker, offline."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from billing.core.periods import PeriodError, parse_instant
from worker.commands.common import CliError


def simulate_command(
    file: Annotated[Path, typer.Argument(help="Timeline: JSON Lines (`-` for stdin).")],
    start: Annotated[
        str | None, typer.Option("--start", help="ISO 8601 [default: first event, floored].")
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--end", help="ISO 8601 [default: last event + 1 month + 2 hours]."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Celery processes (with BILLING_REDIS_URL).")
    ] = 2,
) -> None:
    """Run a timeline of `billing ingest` lines (and `stripe_call` lines) through the real
    worker against the Stripe emulator on test clocks; print every invoice Stripe made and what
    reconciliation concluded. Each line may carry `received_at`, when it reaches the worker."""
    from worker.simulate.simulation import default_span, simulate
    from worker.simulate.timeline import parse_timeline

    text = _read(file)
    timeline = parse_timeline(text.splitlines())
    span = default_span(timeline)
    try:
        start_at = _instant("--start", start) if start else None
        end_at = _instant("--end", end) if end else None
    except PeriodError as exc:
        raise CliError(str(exc)) from None
    if span is None and (start_at is None or end_at is None):
        raise CliError(f"{file}: no line can be placed in time; give --start and --end")
    if span is not None:
        start_at = start_at or span[0]
        end_at = end_at or span[1]
    if start_at is None or end_at is None or end_at <= start_at:
        raise CliError("--end must be after --start")
    console = Console(stderr=True)
    with console.status("simulating…", spinner="dots") as status:
        result = simulate(
            timeline,
            start_at=start_at,
            end_at=end_at,
            redis_url=os.environ.get("BILLING_REDIS_URL") or None,
            workers=workers,
            on_step=lambda at: status.update(f"simulating… {at:%Y-%m-%d %H:%M} UTC"),
        )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    from worker.simulate.report import print_tables

    print_tables(result, Console())


def _instant(option: str, value: str) -> datetime:
    try:
        return parse_instant(value)
    except PeriodError as exc:
        raise PeriodError(f"{option}: {exc}") from None


def _read(file: Path) -> str:
    if str(file) == "-":
        import sys

        return sys.stdin.read()
    try:
        return file.read_text()
    except OSError as exc:
        raise CliError(f"{file}: {exc.strerror}") from None

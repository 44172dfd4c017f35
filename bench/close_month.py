"""Benchmark: the month close of many orgs against the emulator with Stripe's documented limits.

Targets (SPEC.md §8, issue 15): 5,000 orgs in <= 60 s on a 2-core machine, 100,000 orgs in <= 12
minutes; <= 0.5 core-API requests per org; zero failures, zero duplicate meter events. The
product's own path is measured: `billing.usage.close_period` (the task beat runs at the month's
end) on real Celery worker processes over the local Redis, all sharing the Redis request budget,
against the Stripe emulator in its own process with `--limits live` (global 100/s, 25/s per
endpoint, the meter endpoints' own limits) and an aggregation delay for meter events. Meter
events go through the v2 meter event stream (BILLING_STRIPE_METER_TRANSPORT, default `stream`).
Setup (catalog, orgs, subscriptions, a month of usage, the drafts Stripe makes at the period end)
runs without limits and is not measured.

The baseline printed beside the figures is the floor of the limits themselves: the fewest seconds
the close's core-API requests can take at the live global rate (100/s) and its busiest endpoint's
requests at their own 25/s, and the ratio of the measured time to it.

Usage:
    uv run python bench/close_month.py [--orgs 5000] [--workers 8] [--aggregation-delay 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.logging import configure_logging
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/12"
PERIOD_START = datetime(2026, 10, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 11, 1, tzinfo=UTC)
PERIOD_LABEL = "2026-10"
LIVE_GLOBAL_RPS = 100  # Stripe's global live-mode limit (https://docs.stripe.com/rate-limits)
LIVE_ENDPOINT_RPS = 25  # each endpoint's, "unless noted otherwise" (the same page)
V1_ROUTE = "POST /v1/billing/meter_events"
STREAM_ROUTE = "POST /v2/billing/meter_event_stream"
INVOICEITEMS_ROUTE = "POST /v1/invoiceitems"
METER_ROUTES = frozenset({V1_ROUTE, STREAM_ROUTE, "POST /v2/billing/meter_events"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    args = _arguments()
    console = Console(stderr=True)
    logging.basicConfig(level=logging.WARNING)
    configure_logging(Settings(), logging.WARNING)
    name = f"bench_close_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    from models.db import migrate

    migrate(database_url)  # a fresh database of its own: the processes never migrate
    port = free_port()
    emulator_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "BILLING_DATABASE_URL": database_url,
        "BILLING_REDIS_URL": REDIS_URL,
        "BILLING_STRIPE_API_BASE": emulator_url,
        "BILLING_STRIPE_BUDGET": "none",
        "BILLING_STRIPE_REQUESTS_PER_SECOND": str(LIVE_GLOBAL_RPS),
    }
    env.pop("STRIPE_API_KEY", None)
    os.environ.update({k: v for k, v in env.items() if k.startswith("BILLING_")})
    redis.Redis.from_url(REDIS_URL).flushdb()
    emulator = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "stripe-emulator", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[subprocess.Popen[bytes]] = []
    control = httpx.Client(base_url=emulator_url, timeout=30)
    try:
        _wait_for(lambda: control.get("/_emulator/health").status_code == 200, "emulator")
        control.post("/_emulator/config", json={"frozen_time": int(PERIOD_START.timestamp())})
        org_ids = _setup(args.orgs, console)
        close_at = _draft_invoices(control, args, console)
        workers.extend(_start_workers({**env, "BILLING_STRIPE_BUDGET": "redis"}, args.workers))
        _wait_for(lambda: _workers_ready() >= args.workers, "the Celery workers", timeout=300)
        totals = _close(database_url, len(org_ids), close_at, args.chunk_size, console)
        stats = control.get("/_emulator/stats").json()
        _report(args, totals, stats)
    finally:
        for process in workers:
            process.terminate()
        for process in workers:
            process.wait(timeout=30)
        emulator.terminate()
        emulator.wait(timeout=30)
        control.close()
        from models.db import engine_for

        engine_for(database_url).dispose()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orgs", type=int, default=5_000)
    parser.add_argument(
        "--workers", type=int, default=8, help="Celery worker processes (they mostly wait on I/O)"
    )
    parser.add_argument("--chunk-size", type=int, default=50)
    parser.add_argument("--limits", choices=("live", "sandbox", "none"), default="live")
    parser.add_argument(
        "--aggregation-delay",
        type=float,
        default=3.0,
        help="seconds before the emulator's meters count an event (Stripe aggregates later)",
    )
    parser.add_argument("--json", action="store_true")
    return parser.parse_args()


def _draft_invoices(control: httpx.Client, args: argparse.Namespace, console: Console) -> datetime:
    """Move the emulator past the period end (it drafts every cycle invoice, as Stripe does:
    slow for many orgs, not measured), then turn the limits on and zero the counters."""
    close_at = PERIOD_END + timedelta(minutes=10)  # inside Stripe's one-hour grace period
    drafting = time.monotonic()
    control.post("/_emulator/config", json={"frozen_time": int(close_at.timestamp())}, timeout=3600)
    console.print(f"emulator drafted the cycle invoices in {time.monotonic() - drafting:.0f} s")
    control.post(
        "/_emulator/config",
        json={"limits": args.limits, "meter_aggregation_delay_seconds": args.aggregation_delay},
    )
    control.post("/_emulator/reset", json={"stats_only": True})
    return close_at


def _start_workers(env: dict[str, str], count: int) -> list[subprocess.Popen[bytes]]:
    command = [
        *(sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker"),
        *("--concurrency=1", "--loglevel=warning", "--pool=solo"),
        *("--without-gossip", "--without-mingle"),
    ]
    return [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(count)
    ]


def _setup(count: int, console: Console) -> list[str]:
    from sqlmodel import Session

    from billing.ledger.ingest import Ingestor
    from billing.pricing.book import load_book
    from billing.setup.catalog import CatalogSync
    from worker import composition, jobs

    engine = composition.database()
    gateway = composition.stripe_gateway()
    for book in ("devtools", "zenaton"):
        CatalogSync(gateway, engine).sync(load_book(book), PERIOD_START)
    org_ids = [f"org-{i:05d}" for i in range(count)]
    events: list[dict[str, Any]] = []
    for index, org in enumerate(org_ids):
        zen = index % 5 == 4
        events.append(
            {
                "type": "org",
                "org": org,
                "book": "zenaton" if zen else "devtools",
                "plan": "payg" if zen else ("team" if index % 2 else "free"),
                **(
                    {}
                    if zen
                    else {"interval": "year", "seats": 5}
                    if index % 2
                    else {"interval": "month", "seats": 1}
                ),
                "at": PERIOD_START.isoformat(),
            }
        )
        meters = ("execution_time",) if zen else ("copilot_messages", "runner_minutes")
        events.extend(
            {
                "type": "usage",
                "id": f"{org}-{meter}-{day}",
                "org": org,
                "meter": meter,
                "quantity": 100 + index % 700,
                "at": datetime(2026, 10, day, tzinfo=UTC).isoformat(),
            }
            for day in (3, 17, 29)
            for meter in meters
        )
        if not zen:
            events.append(
                {
                    "type": "resources",
                    "org": org,
                    "stack": "main",
                    "count": 50 + index % 300,
                    "at": PERIOD_START.isoformat(),
                }
            )
    with Session(engine) as session:
        # Received after the month's last usage (Oct 29) and before the close: usage dated
        # later than its receive time would be refused.
        outcome = Ingestor(session).ingest(events, datetime(2026, 10, 30, tzinfo=UTC))
        assert outcome.ok, outcome.errors[:3]
        session.commit()
    progress = Progress(
        TextColumn("setup: provisioning"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    with progress, ThreadPoolExecutor(max_workers=8) as pool:
        bar = progress.add_task("orgs", total=count)
        for _ in pool.map(lambda org: jobs.provision_org(org, PERIOD_START), org_ids):
            progress.update(bar, advance=1)
    return org_ids


def _workers_ready() -> int:
    """How many workers answer a ping (the close is timed from when all of them are up)."""
    from worker.celery_app import app

    return len(app.control.ping(timeout=1.0) or [])


def _close(
    database_url: str, org_count: int, close_at: datetime, chunk_size: int, console: Console
) -> dict[str, Any]:
    """Run the close as beat does (`billing.usage.close_period`) and follow its chunks."""
    from sqlalchemy import func
    from sqlmodel import Session, select

    from models.alerts import CloseChunk
    from models.db import engine_for
    from models.push_records import UsagePush
    from worker.tasks.usage import close_period

    engine = engine_for(database_url)
    started = time.monotonic()
    # Followed through the chunks' records below, not through the task's result.
    close_period.apply_async((PERIOD_LABEL, close_at.isoformat(), chunk_size), ignore_result=True)
    progress = Progress(
        TextColumn("month close"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    chunks = select(CloseChunk).where(CloseChunk.period == PERIOD_LABEL)
    with progress:
        bar = progress.add_task("orgs", total=org_count)
        done = 0
        first_chunk = None  # the invoice mirror's sweep runs before any chunk starts
        while done < org_count:
            time.sleep(0.25)
            with Session(engine) as session:
                done = sum(chunk.org_count for chunk in session.exec(chunks))
            if done and first_chunk is None:
                first_chunk = time.monotonic() - started
            progress.update(bar, completed=done)
    seconds = time.monotonic() - started
    with Session(engine) as session:
        failed = sum(chunk.failed_count for chunk in session.exec(chunks))
        sent = session.exec(
            select(func.count()).select_from(UsagePush).where(UsagePush.created_at >= close_at)
        ).one()
    return {
        "orgs": org_count,
        "seconds": round(seconds, 1),
        "first_chunk_done_seconds": round(first_chunk or seconds, 1),
        "failed": failed,
        "sent": sent,
    }


def _report(args: argparse.Namespace, totals: dict[str, Any], stats: dict[str, Any]) -> None:
    by_route: dict[str, int] = stats.get("requests_by_route", {})
    core = sum(v for k, v in by_route.items() if k not in METER_ROUTES)
    seconds = float(totals["seconds"])
    # The limits' own floor: the core requests at the global 100/s, or the busiest endpoint's at
    # its 25/s, whichever takes longer (the zenaton minimum top-ups ride the meter event stream;
    # before, they were one `POST /v1/invoiceitems` per org, the busiest endpoint).
    busiest = max(
        ((route, n) for route, n in by_route.items() if route not in METER_ROUTES),
        key=lambda item: item[1],
        default=("", 0),
    )
    floor = max(core / LIVE_GLOBAL_RPS, busiest[1] / LIVE_ENDPOINT_RPS)
    received = int(stats.get("meter_event_stream_events", 0)) + by_route.get(V1_ROUTE, 0)
    figures = {
        "orgs": totals["orgs"],
        "seconds": seconds,
        "orgs_per_second": round(totals["orgs"] / seconds, 1) if seconds else None,
        "first_chunk_done_seconds": totals["first_chunk_done_seconds"],
        "core_requests": core,
        "core_requests_per_org": round(core / max(totals["orgs"], 1), 3),
        "core_floor_seconds_at_100_per_s": round(core / LIVE_GLOBAL_RPS, 1),
        "busiest_endpoint": {busiest[0]: busiest[1]},
        "invoiceitems_calls": by_route.get(INVOICEITEMS_ROUTE, 0),
        "limits_floor_seconds": round(floor, 1),
        "ratio_to_floor": round(seconds / floor, 2) if floor else None,
        "meter_events_sent": totals["sent"],
        "meter_event_stream_requests": by_route.get(STREAM_ROUTE, 0),
        "meter_event_v1_requests": by_route.get(V1_ROUTE, 0),
        "meter_events_received": received,
        "meter_events_deduplicated_by_stripe": int(stats.get("meter_event_stream_duplicates", 0)),
        "rate_limited_429": int(stats.get("rate_limited_total", 0)),
        "rate_limited_by_route": stats.get("rate_limited_by_route", {}),
        "failed_pushes": totals["failed"],
        # Every event that reached Stripe beyond the ones the push ledger records as sent (a
        # retried stream request or v1 call re-sends its identifiers): 0 when none was sent twice.
        "duplicate_meter_events": received - int(totals["sent"]),
        "emulator_limits": args.limits,
        "aggregation_delay_seconds": args.aggregation_delay,
        "workers": args.workers,
    }
    if args.json:
        print(json.dumps(figures))
        return
    table = Table(title="month close benchmark")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    Console().print(table)


def _wait_for(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not start within {timeout:.0f} s")


if __name__ == "__main__":
    main()

"""Benchmark: month close for many orgs against the emulator at a 100 requests/s limit.

Target (SPEC.md §8): ≥ 90 % of the limit used, zero 429s surfacing as failures, zero
duplicate meter events. The product's own path is measured: real Celery worker processes on
the local Redis run `billing.usage.push_chunk` over every org (as `billing close` does), all
sharing the Redis request budget set to the limit, against the Stripe emulator in its own
process. Setup (catalog, orgs, subscriptions, a month of usage) runs without the limit and is
not measured.

Usage: uv run python bench/close_month.py [--orgs 10000] [--rps 100] [--workers 12]
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orgs", type=int, default=10_000)
    parser.add_argument("--rps", type=int, default=100)
    parser.add_argument(
        "--workers", type=int, default=12, help="Celery worker processes (they mostly wait on I/O)"
    )
    parser.add_argument("--chunk-size", type=int, default=25)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
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
        "BILLING_STRIPE_REQUESTS_PER_SECOND": str(args.rps),
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
        # The close runs inside Stripe's grace period, at the limit, on real workers.
        close_at = PERIOD_END + timedelta(minutes=10)
        # Moving the clock past the period end makes the emulator draft every cycle invoice
        # now (as Stripe does at the period end): slow for many orgs, and not measured.
        drafting = time.monotonic()
        control.post(
            "/_emulator/config",
            json={"frozen_time": int(close_at.timestamp()), "rate_limit_rps": args.rps},
            timeout=1800,
        )
        console.print(f"emulator drafted the cycle invoices in {time.monotonic() - drafting:.0f} s")
        control.post("/_emulator/reset", json={"stats_only": True})
        worker_env = {**env, "BILLING_STRIPE_BUDGET": "redis"}
        workers.extend(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "worker.celery_app",
                    "worker",
                    "--concurrency=1",
                    "--loglevel=warning",
                    "--without-gossip",
                    "--without-mingle",
                    "--pool=solo",
                ],
                cwd=ROOT,
                env=worker_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(args.workers)
        )
        totals = _close(org_ids, close_at, args.chunk_size, console)
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


def _close(
    org_ids: list[str], close_at: datetime, chunk_size: int, console: Console
) -> dict[str, Any]:
    from celery import group

    from worker import jobs
    from worker.tasks.usage import push_chunk

    chunks = list(jobs.chunks(org_ids, chunk_size))
    started = time.monotonic()
    result = group(
        push_chunk.s(chunk, close_at.isoformat(), "2026-10") for chunk in chunks
    ).apply_async()
    progress = Progress(
        TextColumn("month close"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        bar = progress.add_task("orgs", total=len(org_ids))
        while not result.ready():
            done = sum(len(c) for c, r in zip(chunks, result.results, strict=True) if r.ready())
            progress.update(bar, completed=done)
            time.sleep(1)
        progress.update(bar, completed=len(org_ids))
    totals: dict[str, Any] = {
        "orgs": 0,
        "meter_events": 0,
        "adjustments": 0,
        "failed": 0,
        "chunks_failed": 0,
    }
    for counts in result.get(propagate=False):
        if not isinstance(counts, dict):
            totals["chunks_failed"] += 1
            continue
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + int(value)
    totals["seconds"] = round(time.monotonic() - started, 1)
    return totals


def _report(args: argparse.Namespace, totals: dict[str, Any], stats: dict[str, Any]) -> None:
    active = float(stats.get("active_seconds") or totals["seconds"])
    requests = int(stats["requests_total"])
    rate = requests / active if active else 0.0
    statuses = stats.get("responses_by_status", {})
    meter_route = stats.get("requests_by_route", {}).get("POST /v1/billing/meter_events", 0)
    figures = {
        "orgs": totals["orgs"],
        "limit_rps": args.rps,
        "workers": args.workers,
        "requests": requests,
        "seconds": round(active, 1),
        "achieved_rps": round(rate, 1),
        "share_of_limit": round(rate / args.rps, 3),
        "rate_limited_429": int(stats.get("rate_limited_total", 0)),
        "failed_pushes": totals["failed"] + totals["chunks_failed"],
        "meter_events_sent": totals["meter_events"],
        "meter_event_requests": meter_route,
        "duplicate_meter_events": meter_route - totals["meter_events"],
        "responses_by_status": statuses,
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

"""`billing demo`: a real month of invoicing, offline — emulator, embedded database, worker jobs.

The month runs on a Stripe test clock: each simulated day the clock advances, the day's events
are ingested, seat changes are synced and usage totals pushed; at the period end Stripe drafts
the invoices, the month close pushes the final totals inside the grace period, drafts are
reconciled (and held if wrong), the clock passes the grace period, and the final invoices are
reconciled again. With BILLING_REDIS_URL set the jobs run on real Celery worker processes on
Redis; otherwise in this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlmodel import Session

from billing.core.periods import Period, isoformat_z
from billing.ledger.ingest import Ingestor
from billing.pricing.book import load_book
from billing.reconciliation.queries import reconciliation_counts
from billing.reconciliation.reconciler import Reconciler
from billing.setup.catalog import CatalogSync
from billing.stripe_gateway.clocks import TestClocks
from models.db import engine_for, migrate
from stripe_emulator import EmulatorConfig, EmulatorServer
from worker import composition, jobs
from worker.celery_app import app
from worker.demo_data import daily_events, demo_orgs, opening_events
from worker.settings import Settings, get_settings

BOOKS = ("devtools", "zenaton")


@dataclass(frozen=True)
class DemoResult:
    orgs: int
    invoices: int
    meter_events_sent: int
    stripe_requests: int
    reconciliations: dict[str, int]
    plans: dict[str, int]
    invoiced_amount: int
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {
            "orgs": self.orgs,
            "invoices": self.invoices,
            "meter_events_sent": self.meter_events_sent,
            "stripe_requests": self.stripe_requests,
            "reconciliations": self.reconciliations,
        }


class Runner:
    """Runs the worker's jobs in this process, or on Celery workers and waits for them."""

    def __init__(self, settings: Settings, celery: bool) -> None:
        self.settings = settings
        self.celery = celery
        self.locks = jobs.no_locks if not celery else jobs.redis_locks(settings)
        self.meter_events = 0

    def sync_seats(self, org_ids: Iterable[str], now: datetime) -> None:
        if self.celery:
            self._wait(
                [self._send("billing.seats.sync_org", [o, isoformat_z(now)]) for o in org_ids]
            )
            return
        for org_id in org_ids:
            jobs.sync_seats(org_id, now, locks=self.locks, settings=self.settings)

    def push_usage(self, org_ids: list[str], now: datetime) -> None:
        if self.celery:
            results = self._wait(
                [
                    self._send("billing.usage.push_chunk", [chunk, isoformat_z(now)])
                    for chunk in jobs.chunks(org_ids, 10)
                ]
            )
            self.meter_events += sum(int(r["meter_events"]) for r in results)
            return
        for org_id in org_ids:
            outcome = jobs.push_usage(org_id, now, locks=self.locks, settings=self.settings)
            self.meter_events += outcome.meter_events_sent

    def _send(self, name: str, args: list[Any]) -> Any:
        return app.send_task(name, args=args)

    @staticmethod
    def _wait(results: list[Any]) -> list[Any]:
        return [result.get(timeout=600) for result in results]


def run_demo(
    org_count: int,
    seed: int,
    period: Period,
    *,
    workdir: Path,
    report: Callable[[str], None] = lambda _: None,
    show_progress: bool = True,
    workers: int = 2,
) -> DemoResult:
    started = time.monotonic()
    redis_url = os.environ.get("BILLING_REDIS_URL")
    with EmulatorServer(EmulatorConfig()) as emulator:
        settings = get_settings().model_copy(
            update={
                "database_url": f"sqlite:///{workdir / 'billing-demo.db'}",
                "stripe_api_base": emulator.url,
                "stripe_api_key": None,
                "stripe_budget": "redis" if redis_url else "none",
            }
        )
        migrate(settings.database_url)  # the demo's own fresh database
        engine = engine_for(settings.database_url)
        gateway = composition.stripe_gateway(settings)
        report(f"Stripe emulator at {emulator.url}; database {settings.database_url}")
        for name in BOOKS:
            CatalogSync(gateway, engine).sync(load_book(name), period.period_start)
        report("catalog synced: products, meters and prices of the devtools and zenaton books")
        clocks = TestClocks(gateway, poll_seconds=0.05)
        clock = clocks.create(
            period.period_start,
            name=f"demo {period.label()}",
            idempotency_key=f"demo:clock:{period.label()}:{seed}",
        )
        orgs = demo_orgs(org_count, seed)
        _ingest(engine, opening_events(orgs, period.period_start), period.period_start)
        for org in orgs:
            jobs.provision_org(
                org.org_id,
                period.period_start,
                stripe_test_clock_id=clock.stripe_test_clock_id,
                locks=jobs.redis_locks(settings) if redis_url else jobs.no_locks,
                settings=settings,
            )
        report(f"{len(orgs)} orgs provisioned: one customer and one subscription each")
        worker_processes = _start_workers(settings, workers) if redis_url else []
        try:
            runner = Runner(settings, celery=bool(redis_url))
            org_ids = [org.org_id for org in orgs]
            seat_orgs = {org.org_id for org in orgs if org.seats is not None}
            days = list(daily_events(orgs, period, seed))
            progress = Progress(
                TextColumn("simulating {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                disable=not show_progress,
            )
            advances = 0
            with progress:
                bar = progress.add_task(period.label(), total=len(days))
                for day_end, events in days:
                    advances += 1
                    clock = clocks.advance(
                        clock.stripe_test_clock_id,
                        day_end,
                        idempotency_key=f"demo:advance:{seed}:{advances}",
                    )
                    # Seat windows and usage of the day are settled a few minutes later.
                    _ingest(engine, events, day_end)
                    changed = sorted({e["org"] for e in events if e["type"] == "seats"})
                    if day_end == period.period_end:
                        break  # the period's last day is pushed by the month close
                    runner.sync_seats([o for o in changed if o in seat_orgs], day_end)
                    runner.push_usage(org_ids, day_end)
                    progress.update(bar, advance=1)
                # Stripe drafted the cycle invoices at the period end; close inside the grace.
                close_at = period.period_end + timedelta(minutes=10)
                clock = clocks.advance(
                    clock.stripe_test_clock_id,
                    close_at,
                    idempotency_key=f"demo:advance:{seed}:close",
                )
                runner.sync_seats(sorted(seat_orgs), close_at)
                runner.push_usage(org_ids, close_at)
                progress.update(bar, completed=len(days))
            report("month closed: final usage pushed inside Stripe's finalization grace period")
            reconciler = Reconciler(engine, gateway)
            reconciler.sweep(close_at, timedelta(days=40))
            final_at = period.period_end + timedelta(hours=2)
            clocks.advance(
                clock.stripe_test_clock_id, final_at, idempotency_key=f"demo:advance:{seed}:final"
            )
            reconciler.sweep(final_at, timedelta(days=40))
            report("invoices finalized by Stripe and reconciled against the ledger")
        finally:
            for process in worker_processes:
                process.terminate()
            for process in worker_processes:
                process.wait(timeout=30)
        with Session(engine) as session:
            counts = reconciliation_counts(session)
        invoices = [inv for inv in emulator.state.invoices() if inv["status"] != "draft"]
        stats = emulator.state.stats()
        return DemoResult(
            orgs=len(orgs),
            invoices=len(invoices),
            meter_events_sent=int(stats.get("meter_events_total", runner.meter_events)),
            stripe_requests=int(stats["requests_total"]),
            reconciliations=dict(sorted(counts.items())),
            plans=dict(Counter(f"{o.book}/{o.plan}" for o in orgs)),
            invoiced_amount=sum(int(inv["total"]) for inv in invoices),
            seconds=round(time.monotonic() - started, 1),
        )


def _ingest(engine: Any, events: list[dict[str, Any]], now: datetime) -> None:
    if not events:
        return
    with Session(engine) as session:
        outcome = Ingestor(session).ingest(events, now)
        if not outcome.ok:
            raise RuntimeError("demo data rejected: " + "; ".join(map(str, outcome.errors[:5])))
        session.commit()


def _start_workers(settings: Settings, count: int) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "BILLING_DATABASE_URL": settings.database_url,
        "BILLING_STRIPE_API_BASE": settings.stripe_api_base,
        "BILLING_STRIPE_BUDGET": "redis",
    }
    env.pop("STRIPE_API_KEY", None)
    process = subprocess.Popen(  # noqa: S603 (our own CLI, fixed arguments)
        [
            sys.executable,
            "-m",
            "worker.cli",
            "worker",
            f"--concurrency={count}",
            "--loglevel=warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if app.control.ping(timeout=1.0):
            return [process]
    process.terminate()
    raise RuntimeError("the demo's Celery worker did not start within 60 s")


def default_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="billing-demo-"))

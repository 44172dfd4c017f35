"""`billing demo`: a real month of invoicing, offline — one timeline through `billing simulate`.

The demo's orgs and their month of seat changes, usage and resource reports (worker/demo_data.py)
become a timeline: the org events at the period start, each day's events reaching the worker in
one batch at the end of the day. `billing simulate` runs it through the real worker against the
emulator — catalog, provisioning, seat sync, usage pushes, the month close inside Stripe's
grace period, webhooks, reconciliation — and the demo summarises what Stripe invoiced.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from billing.core.periods import Period, isoformat_z
from worker.demo_data import DemoOrg, daily_events, demo_orgs, opening_events
from worker.simulate.simulation import simulate
from worker.simulate.timeline import parse_timeline

DEMO_DATABASE = "billing-demo.db"
GRACE_AND_FINALIZATION = timedelta(hours=2)


@dataclass(frozen=True)
class DemoResult:
    orgs: int
    invoices: int  # finalized (or paid) invoices
    held: int  # drafts held because they differ from the ledger
    meter_events_sent: int
    stripe_requests: int
    reconciliations: dict[str, int]  # latest verdict per invoice
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


def demo_timeline(orgs: list[DemoOrg], period: Period, seed: int) -> list[dict[str, Any]]:
    """The month as timeline lines: each day's events are received at the end of the day."""
    lines = opening_events(orgs, period.period_start)
    for day_end, events in daily_events(orgs, period, seed):
        lines.extend({**event, "received_at": isoformat_z(day_end)} for event in events)
    return lines


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
    orgs = demo_orgs(org_count, seed)
    timeline = parse_timeline(json.dumps(line) for line in demo_timeline(orgs, period, seed))
    end_at = period.period_end + GRACE_AND_FINALIZATION
    report(
        f"{len(orgs)} orgs, {len(timeline.entries)} events from {period.label()}: simulating "
        "the month through the worker against the local Stripe emulator"
    )
    progress = Progress(
        TextColumn("simulating {task.description}"),
        BarColumn(),
        TextColumn("{task.fields[at]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not show_progress,
    )
    total = (end_at - period.period_start).total_seconds()
    with progress:
        bar = progress.add_task(period.label(), total=total, at="")
        result = simulate(
            timeline,
            start_at=period.period_start,
            end_at=end_at,
            database_url=f"sqlite:///{workdir / DEMO_DATABASE}",
            redis_url=os.environ.get("BILLING_REDIS_URL") or None,
            workers=workers,
            workdir=workdir,
            on_step=lambda at: progress.update(
                bar,
                completed=(at - period.period_start).total_seconds(),
                at=f"{at:%Y-%m-%d %H:%M} UTC",
            ),
        )
    if result["refused"]:
        raise RuntimeError(f"demo data refused: {result['refused'][:3]}")
    return summarise(result, orgs, time.monotonic() - started)


def summarise(result: dict[str, Any], orgs: list[DemoOrg], seconds: float) -> DemoResult:
    invoices = [inv for org in result["orgs"].values() for inv in org["invoices"]]
    final = [inv for inv in invoices if inv["status"] != "draft"]
    verdicts = Counter(
        inv["reconciliation"]["status"] if inv["reconciliation"] else "not_reconciled"
        for inv in invoices
    )
    return DemoResult(
        orgs=len(orgs),
        invoices=len(final),
        held=sum(1 for inv in invoices if inv["held"]),
        meter_events_sent=int(result["meter_events_sent"]),
        stripe_requests=int(result["stripe_requests"]),
        reconciliations=dict(sorted(verdicts.items())),
        plans=dict(Counter(f"{o.book}/{o.plan}" for o in orgs)),
        invoiced_amount=sum(int(inv["total"]) for inv in final),
        seconds=round(seconds, 1),
    )


def default_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="billing-demo-"))

"""Benchmark: expected invoices of every org for one month (target: 100,000 orgs under 20 s).

Creates a throwaway PostgreSQL database on the local server, generates orgs, seats, usage
events and resource reports through the Ingestor's bulk path, then times
`expected_invoices_for_period` for February 2026. Usage: uv run python bench/expected_invoices.py
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
from rich.console import Console
from rich.progress import Progress

from billing.core.periods import isoformat_z, month_period
from billing.ledger.ingest import Ingestor
from billing.ledger.queries import expected_invoices_for_period
from models.db import make_engine, migrate, unit_of_work

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CHUNK = 100_000
PERIOD = month_period("2026-02")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orgs", type=int, default=100_000)
    parser.add_argument("--events-per-org", type=int, default=4)
    args = parser.parse_args()
    console = Console()
    name = f"bench_invoices_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrate(url)
        engine = make_engine(url)
        started = time.perf_counter()
        lines = list(_events(random.Random(7), args.orgs, args.events_per_org))
        with Progress(console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task("generating ledger", total=len(lines))
            for offset in range(0, len(lines), CHUNK):
                with unit_of_work(engine) as session:
                    outcome = Ingestor(session).ingest(
                        lines[offset : offset + CHUNK], datetime.now(UTC)
                    )
                assert outcome.ok, outcome.errors[:3]
                progress.advance(task, min(CHUNK, len(lines) - offset))
        console.print(
            f"generated {len(lines):,} ledger events for {args.orgs:,} orgs "
            f"in {time.perf_counter() - started:.1f} s"
        )
        with unit_of_work(engine) as session:
            session.connection().exec_driver_sql("ANALYZE")
        started = time.perf_counter()
        count = total_amount = lines_count = 0
        with (
            Progress(console=Console(stderr=True), transient=True) as progress,
            unit_of_work(engine) as session,
        ):
            task = progress.add_task("expected invoices", total=args.orgs)
            for invoice in expected_invoices_for_period(session, PERIOD):
                count += 1
                lines_count += len(invoice.lines)
                total_amount += invoice.total_amount
                if count % 5_000 == 0:
                    progress.update(task, completed=count)
        elapsed = time.perf_counter() - started
        console.print(
            f"expected invoices for {PERIOD.label()}: {count:,} orgs, {lines_count:,} lines, "
            f"total {total_amount:,} cents, in {elapsed:.1f} s ({count / elapsed:,.0f} orgs/s)"
        )
        engine.dispose()
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _events(rng: random.Random, orgs: int, events_per_org: int) -> Iterator[str]:
    """Orgs first (a tenth on Team with seats), subscribed from early January to early February,
    then seats, usage and resource reports, none before its org's subscription (the Ingestor
    refuses those)."""
    january = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [f"org_{index:06d}" for index in range(orgs)]
    subscribed: list[datetime] = []
    for index, org in enumerate(ids):
        at = january + timedelta(days=rng.randrange(40), seconds=rng.randrange(86_400))
        subscribed.append(at)
        if index % 10 == 0:
            yield _line(type="org", org=org, plan="team", seats=rng.randrange(1, 50), at=at)
        else:
            yield _line(type="org", org=org, plan="free", at=at)
    for index, org in enumerate(ids):
        if index % 10 == 0:
            at = max(_in_february(rng), subscribed[index])
            yield _line(type="seats", org=org, count=rng.randrange(1, 80), at=at)
    for index, org in enumerate(ids):
        for number in range(events_per_org):
            meter = ("copilot_messages", "runner_minutes")[number % 2]
            yield _line(
                type="usage",
                id=f"evt_{index}_{number}",
                org=org,
                meter=meter,
                quantity=rng.randrange(1, 400),
                at=max(_in_february(rng), subscribed[index]),
            )
    for index, org in enumerate(ids):
        # One long-lived stack reported at the subscription (carried into February when that
        # was in January), one short-lived.
        at = subscribed[index]
        yield _line(type="resources", org=org, stack="prod", count=rng.randrange(300), at=at)
        start = max(_in_february(rng), at)
        yield _line(type="resources", org=org, stack="ci", count=rng.randrange(1, 60), at=start)
        yield _line(type="resources", org=org, stack="ci", count=0, at=start + timedelta(hours=5))


def _in_february(rng: random.Random) -> datetime:
    return PERIOD.period_start + timedelta(seconds=rng.randrange(27 * 86_400))


def _line(**fields: object) -> str:
    return json.dumps(
        {
            key: isoformat_z(value) if isinstance(value, datetime) else value
            for key, value in fields.items()
        }
    )


if __name__ == "__main__":
    main()

"""Benchmark: usage-event ingestion rate into PostgreSQL with dedup (target ≥ 20,000 events/s).

Creates a throwaway database on the local server, loads orgs, then ingests several batches of
usage events as JSON lines through the same Ingestor the CLI uses (validation included), each
batch holding a share of duplicate ids (repeats inside the batch and ids already stored).
Prints events/s per run and the median. Usage: uv run python bench/ingest.py [--events N]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from rich.console import Console
from rich.progress import Progress

from billing.ledger.ingest import Ingestor
from models.db import make_engine, migrate, unit_of_work

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
METERS = ("copilot_messages", "runner_minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000, help="events per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--orgs", type=int, default=2_000)
    parser.add_argument("--duplicates", type=float, default=0.10, help="share of repeated ids")
    args = parser.parse_args()
    console = Console()
    name = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrate(url)
        engine = make_engine(url)
        base = datetime(2026, 2, 1, tzinfo=UTC)
        orgs = [f"org_{i:06d}" for i in range(args.orgs)]
        with unit_of_work(engine) as session:
            Ingestor(session).ingest(
                [
                    json.dumps(
                        {"type": "org", "org": org, "plan": "free", "at": "2026-01-01T00:00:00Z"}
                    )
                    for org in orgs
                ],
                datetime.now(UTC),
            )
        rng = random.Random(42)
        rates: list[float] = []
        stored_ids: list[tuple[str, str]] = []
        with Progress(console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task("ingesting", total=args.runs)
            for run in range(args.runs):
                lines, batch_ids = _batch(
                    rng,
                    run=run,
                    size=args.events,
                    orgs=orgs,
                    duplicate_share=args.duplicates,
                    stored_ids=stored_ids,
                    base=base,
                )
                started = time.perf_counter()
                with unit_of_work(engine) as session:
                    outcome = Ingestor(session).ingest(lines, datetime.now(UTC))
                elapsed = time.perf_counter() - started
                assert outcome.ok, outcome.errors[:3]
                stored_ids.extend(batch_ids)
                rate = len(lines) / elapsed
                rates.append(rate)
                stored, repeated = outcome.stored["usage"], outcome.duplicates["usage"]
                console.print(
                    f"run {run + 1}: {len(lines):,} events in {elapsed:.2f} s = "
                    f"{rate:,.0f} events/s (stored {stored:,}, duplicates {repeated:,})"
                )
                progress.advance(task)
        console.print(f"median: {statistics.median(rates):,.0f} events/s over {args.runs} runs")
        engine.dispose()
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _batch(
    rng: random.Random,
    *,
    run: int,
    size: int,
    orgs: list[str],
    duplicate_share: float,
    stored_ids: list[tuple[str, str]],
    base: datetime,
) -> tuple[list[str], list[tuple[str, str]]]:
    lines: list[str] = []
    fresh: list[tuple[str, str]] = []
    for index in range(size):
        roll = rng.random()
        if roll < duplicate_share and (fresh or stored_ids):
            # Half the repeats come from this batch, half from earlier batches.
            pool = fresh if (roll < duplicate_share / 2 or not stored_ids) and fresh else stored_ids
            org, event_id = rng.choice(pool)
        else:
            org, event_id = rng.choice(orgs), f"evt_{run}_{index}"
            fresh.append((org, event_id))
        at = base + timedelta(seconds=rng.randrange(28 * 86_400))
        lines.append(
            json.dumps(
                {
                    "type": "usage",
                    "id": event_id,
                    "org": org,
                    "meter": METERS[index % 2],
                    "quantity": rng.randrange(1, 50),
                    "at": at.isoformat().replace("+00:00", "Z"),
                }
            )
        )
    return lines, fresh


if __name__ == "__main__":
    main()

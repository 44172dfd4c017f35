"""Benchmark: usage-event ingestion rate into PostgreSQL with dedup (target ≥ 20,000 events/s).

Creates a throwaway database on the local server, loads orgs, then ingests several batches of
usage events as JSON lines through the same Ingestor the CLI uses (validation included), each
batch holding a share of duplicates (repeats inside the batch and events already stored, each an
identical copy: the same id with other content would be a conflict and refuse the batch).
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
        stored_lines: list[str] = []
        with Progress(console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task("ingesting", total=args.runs)
            for run in range(args.runs):
                lines, batch_lines = _batch(
                    rng,
                    run=run,
                    size=args.events,
                    orgs=orgs,
                    duplicate_share=args.duplicates,
                    stored_lines=stored_lines,
                    base=base,
                )
                started = time.perf_counter()
                with unit_of_work(engine) as session:
                    outcome = Ingestor(session).ingest(lines, datetime.now(UTC))
                elapsed = time.perf_counter() - started
                assert outcome.ok, outcome.errors[:3]
                stored_lines.extend(batch_lines)
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
    stored_lines: list[str],
    base: datetime,
) -> tuple[list[str], list[str]]:
    """A batch of usage lines and the fresh ones among them; a repeat is an identical copy."""
    lines: list[str] = []
    fresh: list[str] = []
    for index in range(size):
        roll = rng.random()
        if roll < duplicate_share and (fresh or stored_lines):
            # Half the repeats come from this batch, half from earlier batches.
            from_batch = (roll < duplicate_share / 2 or not stored_lines) and fresh
            pool = fresh if from_batch else stored_lines
            lines.append(rng.choice(pool))
            continue
        at = base + timedelta(seconds=rng.randrange(28 * 86_400))
        text = json.dumps(
            {
                "type": "usage",
                "id": f"evt_{run}_{index}",
                "org": rng.choice(orgs),
                "meter": METERS[index % 2],
                "quantity": rng.randrange(1, 50),
                "at": at.isoformat().replace("+00:00", "Z"),
            }
        )
        lines.append(text)
        fresh.append(text)
    return lines, fresh


if __name__ == "__main__":
    main()

"""Benchmark: usage-event ingestion into PostgreSQL with dedup, beside a hand-written floor.

Targets (SPEC §8): the project's ingest ≥ 30,000 events/s and ≥ 0.9× the floor, in the same run.

Creates a throwaway database on the local server, loads orgs, then ingests several batches of
usage events as JSON lines through the same Ingestor the CLI uses (validation included), each
batch holding a share of duplicates (repeats inside the batch and events already stored, each an
identical copy: the same id with other content would be a conflict and refuse the batch). Each
run times, on the very same lines, a hand-written floor: `json.loads`, a binary `COPY` into a
temporary table, then one `INSERT … SELECT DISTINCT ON (org_id, event_id) … ON CONFLICT DO
NOTHING` into a table of the usage events table's shape (no validation, no conflict check).
The two alternate run by run so that the machine's noise falls on both. Prints events/s per run,
the medians and their ratio; `--json` prints one JSON object instead.
Usage: uv run python bench/ingest.py [--events N] [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from rich.console import Console

from billing.ledger.ingest import Ingestor
from models.db import make_engine, migrate, unit_of_work

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
METERS = ("copilot_messages", "runner_minutes")
FLOOR_TABLE = "floor_usage_events"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000, help="events per run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--orgs", type=int, default=2_000)
    parser.add_argument("--duplicates", type=float, default=0.10, help="share of repeated ids")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    console = Console(quiet=args.json)
    name = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrate(url)
        result = _measure(url, args, console)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if args.json:
        print(json.dumps(result))
    else:
        console.print(
            f"[bold]project median {result['project_events_per_s']:,.0f} events/s, floor median "
            f"{result['floor_events_per_s']:,.0f} events/s, ratio {result['ratio']:.2f}[/bold] "
            f"(targets: ≥ 30,000 events/s and ≥ 0.90 × the floor)"
        )


def _measure(url: str, args: argparse.Namespace, console: Console) -> dict[str, Any]:
    engine = make_engine(url)
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
    with psycopg.connect(url, autocommit=True) as conn:
        # The same columns, defaults, indexes and constraints, the foreign key to orgs included.
        conn.execute(f"CREATE TABLE {FLOOR_TABLE} (LIKE usage_events INCLUDING ALL)")
        conn.execute(f"ALTER TABLE {FLOOR_TABLE} ADD FOREIGN KEY (org_id) REFERENCES orgs (id)")
    base = datetime(2026, 2, 1, tzinfo=UTC)
    rng = random.Random(42)
    project_rates: list[float] = []
    floor_rates: list[float] = []
    stored_lines: list[str] = []
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
        # Alternate which goes first, so neither always runs on a warmer (or busier) machine.
        order = (_time_project, _time_floor) if run % 2 == 0 else (_time_floor, _time_project)
        for timer in order:
            rate, detail = timer(engine, url, lines)
            (project_rates if timer is _time_project else floor_rates).append(rate)
            label = "project" if timer is _time_project else "floor  "
            console.print(
                f"run {run + 1} {label}: {len(lines):,} events = {rate:,.0f} events/s ({detail})"
            )
        stored_lines.extend(batch_lines)
    engine.dispose()
    project, floor = statistics.median(project_rates), statistics.median(floor_rates)
    return {
        "events_per_run": args.events,
        "runs": args.runs,
        "duplicate_share": args.duplicates,
        "project_events_per_s": round(project),
        "floor_events_per_s": round(floor),
        "ratio": round(project / floor, 3),
        "project_runs": [round(rate) for rate in project_rates],
        "floor_runs": [round(rate) for rate in floor_rates],
    }


def _time_project(engine: Any, _url: str, lines: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    with unit_of_work(engine) as session:
        outcome = Ingestor(session).ingest(lines, datetime.now(UTC))
    elapsed = time.perf_counter() - started
    assert outcome.ok, outcome.errors[:3]
    stored, repeated = outcome.stored["usage"], outcome.duplicates["usage"]
    return len(lines) / elapsed, f"stored {stored:,}, duplicates {repeated:,}"


def _time_floor(_engine: Any, url: str, lines: list[str]) -> tuple[float, str]:
    """The hand-written floor: parse, binary COPY into a temp table, one deduplicating insert."""
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        received_at = datetime.now(UTC)
        with conn.cursor() as cursor:
            cursor.execute(
                "CREATE TEMP TABLE floor_stage (event_id text, org_id text, meter text, "
                "quantity int8, at text) ON COMMIT DROP"
            )
            copy_sql = "COPY floor_stage FROM STDIN (FORMAT BINARY)"
            with cursor.copy(copy_sql) as copy:
                copy.set_types(["text", "text", "text", "int8", "text"])
                for text in lines:
                    event = json.loads(text)
                    copy.write_row(
                        (event["id"], event["org"], event["meter"], event["quantity"], event["at"])
                    )
            cursor.execute(
                f"INSERT INTO {FLOOR_TABLE} (event_id, org_id, meter, quantity, at, received_at) "
                "SELECT DISTINCT ON (org_id, event_id) event_id, org_id, meter, "
                "quantity::numeric, at::timestamptz, %s FROM floor_stage "
                "ON CONFLICT DO NOTHING",
                (received_at,),
            )
            stored = cursor.rowcount
        conn.commit()
        elapsed = time.perf_counter() - started
    return len(lines) / elapsed, f"stored {stored:,}"


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

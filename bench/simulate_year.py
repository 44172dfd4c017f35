"""Benchmark: `billing simulate` of a year for a handful of orgs (target: under 3 minutes).

The timeline: five orgs on both books (Team annual, Free monthly, pay-as-you-go, Free zenaton),
weekly usage for 52 weeks and four seat changes. Beside it, in the same run, the floor: the same
number of Stripe requests made bare to a fresh emulator with stripe-python (what the simulation
could not go below even if the worker cost nothing). Prints the median of `--runs` and the
ratio. Usage: uv run python bench/simulate_year.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import stripe
from rich.console import Console
from rich.table import Table

from stripe_emulator import EmulatorConfig, EmulatorServer
from worker.logging import configure_logging
from worker.settings import get_settings
from worker.simulate.simulation import default_span, simulate
from worker.simulate.timeline import parse_timeline

START = datetime(2027, 1, 1, tzinfo=UTC)
ORGS = (
    ("acme", "devtools", "team", "year", 10),
    ("beta", "devtools", "free", "month", None),
    ("gamma", "devtools", "team", "year", 5),
    ("zen-a", "zenaton", "payg", None, None),
    ("zen-b", "zenaton", "free", None, None),
)
SEAT_CHANGES = ((2, "gamma", 8), (5, "acme", 14), (9, "gamma", 9), (11, "acme", 12))


def year_timeline(seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    lines: list[dict[str, Any]] = []
    for org, book, plan, interval, seats in ORGS:
        line: dict[str, Any] = {"type": "org", "org": org, "book": book, "plan": plan}
        line["at"] = _z(START)
        if interval:
            line["interval"] = interval
        if seats:
            line["seats"] = seats
        lines.append(line)
    serial = 0
    for week in range(52):
        at = START + timedelta(days=7 * week + 2, hours=10)
        for org, book, *_ in ORGS:
            serial += 1
            meter, quantity = (
                ("copilot_messages", rng.randint(50, 300))
                if book == "devtools"
                else ("execution_time", rng.randint(1_000, 90_000))
            )
            lines.append(
                {
                    "type": "usage",
                    "id": f"u{serial}",
                    "org": org,
                    "meter": meter,
                    "quantity": quantity,
                    "at": _z(at),
                }
            )
    for month, org, count in SEAT_CHANGES:
        at = datetime(2027, month, 12, 15, 30, tzinfo=UTC)
        lines.append({"type": "seats", "org": org, "count": count, "at": _z(at)})
    return sorted(lines, key=lambda line: str(line["at"]))


def _z(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def run_simulation() -> tuple[float, dict[str, Any]]:
    timeline = parse_timeline(json.dumps(line) for line in year_timeline())
    span = default_span(timeline)
    assert span is not None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        result = simulate(timeline, start_at=span[0], end_at=span[1], workdir=Path(workdir))
    return time.perf_counter() - started, result


def run_floor(requests: int) -> float:
    """`requests` bare stripe-python calls to a fresh emulator (a customer retrieved)."""
    with EmulatorServer(EmulatorConfig()) as emulator:
        client = stripe.StripeClient(
            "sk_test_floor", base_addresses={"api": emulator.url}, max_network_retries=0
        )
        customer = client.v1.customers.create()
        started = time.perf_counter()
        for _ in range(requests):
            client.v1.customers.retrieve(customer.id)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    configure_logging(get_settings(), logging.WARNING)
    console = Console()
    sims: list[float] = []
    floors: list[float] = []
    result: dict[str, Any] = {}
    for run in range(args.runs):
        seconds, result = run_simulation()
        sims.append(seconds)
        floors.append(run_floor(int(result["stripe_requests"])))
        console.print(f"run {run + 1}: simulation {seconds:.1f} s, floor {floors[-1]:.1f} s")
    invoices = [i for org in result["orgs"].values() for i in org["invoices"]]
    table = Table(title="billing simulate: a year, five orgs (medians)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("simulated span", f"{result['start']} → {result['end']}")
    table.add_row("invoices", str(len(invoices)))
    table.add_row("Stripe requests", str(result["stripe_requests"]))
    table.add_row("meter events", str(result["meter_events_sent"]))
    table.add_row("simulation seconds", f"{statistics.median(sims):.1f}")
    table.add_row("floor seconds (bare requests)", f"{statistics.median(floors):.1f}")
    table.add_row("ratio", f"{statistics.median(sims) / statistics.median(floors):.1f}×")
    table.add_row("target", "under 180 s")
    console.print(table)


if __name__ == "__main__":
    main()

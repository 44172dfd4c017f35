"""Benchmark: quota checks per second against the local Redis, beside a bare redis-py loop.

Target (SPEC §8): one Redis round trip per check and at least 0.8× a bare one-round-trip loop.

Creates a throwaway SQLite database (or uses --database-url) with `--orgs` Pay-as-you-go orgs
of the zenaton book, then times `QuotaService.check` round-robin over the orgs (so no org hits
its limits) for tasks_per_second (the quota script's sliding window) and tasks_per_month (its
month counter, plus a database checkpoint every 100 units per org). In the same run, with the
same processes, orgs and number of checks, it times the floor: a bare redis-py loop of one
EVALSHA of a one-line script (an INCR of the org's key) per check. Each process warms up first
(the service its org-terms cache); the rate is all processes' checks over the wall time from a
shared start. Prints checks/s per run, the medians and the ratio; `--json` prints one object.
Usage: uv run python bench/quotas.py [--processes 1 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import redis
import structlog
from rich.console import Console

from billing.core.meters import Quota
from billing.pricing.book_cache import BookCache
from billing.quotas.service import QuotaService
from models.db import make_engine, migrate, unit_of_work
from models.ledger import Org

REDIS_URL = "redis://127.0.0.1:6379/15"
NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


FLOOR_SCRIPT = "return redis.call('INCR', KEYS[1])"


def _worker(  # noqa: PLR0917 (multiprocessing passes its args positionally)
    database_url: str,
    prefix: str,
    quota: Quota | None,
    orgs: list[str],
    checks: int,
    barrier: Barrier,
    out: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    """Time `checks` quota checks of `quota`, or (None) the bare one-round-trip loop."""
    client = redis.Redis.from_url(REDIS_URL)
    if quota is None:
        sha = client.script_load(FLOOR_SCRIPT)
        keys = [f"{prefix}:{{{org}}}:floor" for org in orgs]
        for key in keys:  # warm up as the service does
            client.evalsha(sha, 1, key)
        barrier.wait(timeout=120)
        started = time.perf_counter()
        for index in range(checks):
            client.evalsha(sha, 1, keys[index % len(keys)])
        out.put((started, time.perf_counter(), 0))
        return
    service = QuotaService(client, make_engine(database_url), BookCache(), key_prefix=prefix)
    for org in orgs:  # warm the terms cache: the timed loop measures Redis, not org lookups
        service.check(org, quota, NOW, consume=False)
    barrier.wait(timeout=120)
    started = time.perf_counter()
    denied = 0
    for index in range(checks):
        denied += not service.check(orgs[index % len(orgs)], quota, NOW).allowed
    out.put((started, time.perf_counter(), denied))


def _run(
    database_url: str, quota: Quota | None, orgs: list[str], processes: int, checks: int
) -> float:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(processes)
    out: multiprocessing.Queue[tuple[float, float, int]] = context.Queue()
    prefix = f"bench:quota:{uuid.uuid4().hex}"
    # Each process takes its own slice of the orgs, as a real deployment shards by request.
    workers = [
        context.Process(
            target=_worker,
            args=(database_url, prefix, quota, orgs[i::processes], checks, barrier, out),
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=10_000))
    for offset in range(0, len(keys), 10_000):
        client.delete(*keys[offset : offset + 10_000])
    assert sum(result[2] for result in results) == 0, "the benchmark orgs hit a limit"
    wall = max(result[1] for result in results) - min(result[0] for result in results)
    return processes * checks / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--checks", type=int, default=20_000, help="checks per process per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--orgs", type=int, default=1_000)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    console = Console(quiet=args.json)
    with tempfile.TemporaryDirectory() as folder:
        database_url = args.database_url or f"sqlite:///{Path(folder) / 'bench.db'}"
        orgs = _orgs(database_url, args.orgs)
        console.print(
            f"{args.orgs:,} payg orgs, {args.checks:,} checks per process per run, "
            f"{multiprocessing.cpu_count()} CPUs, Redis {REDIS_URL}"
        )
        results = [
            _measure(database_url, quota, orgs, processes=processes, args=args, console=console)
            for quota in (Quota.TASKS_PER_SECOND, Quota.TASKS_PER_MONTH)
            for processes in args.processes
        ]
    if args.json:
        print(
            json.dumps({"checks_per_process": args.checks, "runs": args.runs, "results": results})
        )


def _measure(
    database_url: str,
    quota: Quota,
    orgs: list[str],
    *,
    processes: int,
    args: argparse.Namespace,
    console: Console,
) -> dict[str, Any]:
    """Medians of the project's checks and of the bare loop, run after run, and their ratio."""
    rates: list[float] = []
    floor_rates: list[float] = []
    for run in range(args.runs):
        for mode in (quota, None) if run % 2 == 0 else (None, quota):
            rate = _run(database_url, mode, orgs, processes, args.checks)
            (rates if mode is not None else floor_rates).append(rate)
            label = quota.value if mode is not None else "bare EVALSHA loop"
            console.print(f"{label}, {processes} process(es), run {run + 1}: {rate:,.0f} checks/s")
    project, floor = statistics.median(rates), statistics.median(floor_rates)
    console.print(
        f"[bold]{quota.value}, {processes} process(es): median {project:,.0f} checks/s, "
        f"bare loop {floor:,.0f} checks/s, ratio {project / floor:.2f}[/bold] (target ≥ 0.80)"
    )
    return {
        "quota": quota.value,
        "processes": processes,
        "checks_per_s": round(project),
        "floor_checks_per_s": round(floor),
        "ratio": round(project / floor, 3),
    }


def _orgs(database_url: str, count: int) -> list[str]:
    migrate(database_url)
    engine = make_engine(database_url)
    run_id = uuid.uuid4().hex[:6]
    orgs = [f"bench_{run_id}_{i:05d}" for i in range(count)]
    with unit_of_work(engine) as session:
        for org in orgs:
            session.add(
                Org(
                    id=org,
                    book="zenaton",
                    plan="payg",
                    interval="month",
                    term_start_at=NOW,
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
    engine.dispose()
    return orgs


if __name__ == "__main__":
    main()

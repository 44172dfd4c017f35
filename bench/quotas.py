"""Benchmark: quota checks per second against the local Redis, in one process and in several.

Creates a throwaway SQLite database (or uses --database-url) with `--orgs` Pay-as-you-go orgs
of the zenaton book, then times `QuotaService.check` round-robin over the orgs (so no org hits
its limits) for tasks_per_second (Redis only: the sliding-window script) and tasks_per_month
(Redis counter, plus a database checkpoint every 100 units per org). Each process warms up its
org-terms cache first; the rate is all processes' checks over the wall time from a shared start.
Prints checks/s per run and the median. Usage: uv run python bench/quotas.py [--processes 1 4]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier
from pathlib import Path

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


def _worker(  # noqa: PLR0917 (multiprocessing passes its args positionally)
    database_url: str,
    prefix: str,
    quota: Quota,
    orgs: list[str],
    checks: int,
    barrier: Barrier,
    out: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    service = QuotaService(
        redis.Redis.from_url(REDIS_URL), make_engine(database_url), BookCache(), key_prefix=prefix
    )
    for org in orgs:  # warm the terms cache: the timed loop measures Redis, not org lookups
        service.check(org, quota, NOW, consume=False)
    barrier.wait(timeout=120)
    started = time.perf_counter()
    denied = 0
    for index in range(checks):
        denied += not service.check(orgs[index % len(orgs)], quota, NOW).allowed
    out.put((started, time.perf_counter(), denied))


def _run(database_url: str, quota: Quota, orgs: list[str], processes: int, checks: int) -> float:
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
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    console = Console()
    with tempfile.TemporaryDirectory() as folder:
        database_url = args.database_url or f"sqlite:///{Path(folder) / 'bench.db'}"
        migrate(database_url)
        engine = make_engine(database_url)
        run_id = uuid.uuid4().hex[:6]
        orgs = [f"bench_{run_id}_{i:05d}" for i in range(args.orgs)]
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
        console.print(
            f"{args.orgs:,} payg orgs, {args.checks:,} checks per process per run, "
            f"{multiprocessing.cpu_count()} CPUs, Redis {REDIS_URL}"
        )
        for quota in (Quota.TASKS_PER_SECOND, Quota.TASKS_PER_MONTH):
            for processes in args.processes:
                rates = []
                for run in range(args.runs):
                    rate = _run(database_url, quota, orgs, processes, args.checks)
                    rates.append(rate)
                    console.print(
                        f"{quota.value}, {processes} process(es), run {run + 1}: "
                        f"{rate:,.0f} checks/s"
                    )
                console.print(
                    f"[bold]{quota.value}, {processes} process(es): median "
                    f"{statistics.median(rates):,.0f} checks/s[/bold]"
                )


if __name__ == "__main__":
    main()

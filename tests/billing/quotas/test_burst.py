"""A tasks-per-second burst from several processes at once is denied for exactly the excess."""

from __future__ import annotations

import multiprocessing
import time
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier

import pytest
import redis
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from billing.core.meters import Quota
from models.db import make_engine
from models.quota_records import QuotaEvent
from tests.conftest import REDIS_TEST_URL
from tests.fixtures.quotas import add_org, drop_prefix, make_service, new_prefix

pytestmark = pytest.mark.redis

PROCESSES = 4
CHECKS_PER_PROCESS = 60
LIMIT = 100  # the free plan's tasks per second
NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


def _burst(
    database_url: str,
    prefix: str,
    barrier: Barrier,
    out: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    engine = make_engine(database_url)
    service = make_service(engine, prefix)
    # Warm up: load the org's terms and the Lua script before the race starts.
    service.check("org_burst", Quota.TASKS_PER_SECOND, NOW, consume=False)
    barrier.wait(timeout=30)
    started = time.monotonic()
    allowed = sum(
        service.check("org_burst", Quota.TASKS_PER_SECOND, NOW).allowed
        for _ in range(CHECKS_PER_PROCESS)
    )
    out.put((allowed, started, time.monotonic()))
    engine.dispose()


def _run_burst(database_url: str, prefix: str) -> tuple[int, float]:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(PROCESSES)
    out: multiprocessing.Queue[tuple[int, float, float]] = context.Queue()
    workers = [
        context.Process(target=_burst, args=(database_url, prefix, barrier, out))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    allowed = sum(result[0] for result in results)
    span = max(result[2] for result in results) - min(result[1] for result in results)
    return allowed, span


def test_burst_from_several_processes_is_denied_exactly_the_excess(
    engine: Engine, database_url: str
) -> None:
    add_org(engine, "org_burst", "free")
    client = redis.Redis.from_url(REDIS_TEST_URL)
    # Every check of a burst runs on Redis between the first start and the last end measured
    # by the processes (CLOCK_MONOTONIC is one clock for the machine): when that span is under
    # the one-second window, all 240 checks fell in one window. A machine so loaded that it is
    # not gets a fresh key and another try.
    for _attempt in range(3):
        prefix = new_prefix()
        try:
            allowed, span = _run_burst(database_url, prefix)
        finally:
            drop_prefix(client, prefix)
        if span < 0.9:
            break
    else:
        pytest.fail(f"could not fit a burst of {PROCESSES * CHECKS_PER_PROCESS} in one second")
    assert allowed == LIMIT
    assert PROCESSES * CHECKS_PER_PROCESS - allowed == 140
    with Session(engine) as session:
        [event] = session.exec(select(QuotaEvent)).all()
    assert (event.org_id, event.quota, event.decision, event.limit, event.used) == (
        "org_burst",
        "tasks_per_second",
        "denied",
        LIMIT,
        LIMIT,
    )

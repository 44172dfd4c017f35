"""The per-second window's Redis string (billing/quotas/window.py) and the counters' script
calls: bounded by buckets under a soft limit, untouched by peeks, expiring, reloaded after a
SCRIPT FLUSH, and never over-admitting when clients race at the limit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from sqlalchemy.engine import Engine

from billing.core.meters import Quota
from billing.pricing.book_cache import BookCache
from billing.quotas.counters import QuotaCounters
from billing.quotas.service import (
    WINDOW_KEY_SUFFIX,
    QuotaDecision,
    QuotaRequestError,
    QuotaService,
)
from billing.quotas.window import (
    BUCKET_MILLISECONDS,
    KEY_TTL_MILLISECONDS,
    MAX_BYTES,
    MAX_RECORDS,
    WINDOW_MILLISECONDS,
    read_window,
)
from tests.conftest import REDIS_TEST_URL
from tests.fixtures.quotas import add_org, books_with_soft, drop_prefix, make_service, new_prefix
from tests.integration.brokers import RedisServer

pytestmark = pytest.mark.redis

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
LIVE_BUCKETS = WINDOW_MILLISECONDS // BUCKET_MILLISECONDS + 1


@pytest.fixture
def client() -> redis.Redis:
    return redis.Redis.from_url(REDIS_TEST_URL)


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    prefix = new_prefix()
    yield prefix
    drop_prefix(client, prefix)


def _window_key(prefix: str, org_id: str) -> str:
    return f"{prefix}:{{{org_id}}}:{WINDOW_KEY_SUFFIX}"


def _redis_ms(client: redis.Redis) -> int:
    seconds, microseconds = client.time()
    return int(seconds) * 1000 + int(microseconds) // 1000


def test_a_soft_limit_keeps_the_window_to_one_record_a_bucket(
    engine: Engine, client: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    add_org(engine, "org_soft", "free", book="soft")  # 2 tasks a second, soft
    service = make_service(engine, prefix, books_with_soft(tmp_path))
    key = _window_key(prefix, "org_soft")
    started = _redis_ms(client)
    checks = 0
    largest = 0
    # Far past the limit for more than a window of Redis's clock: every check is admitted.
    while checks < 600 or _redis_ms(client) - started < WINDOW_MILLISECONDS + 300:
        last = service.check("org_soft", Quota.TASKS_PER_SECOND, NOW)
        assert last.allowed
        checks += 1
        largest = max(largest, client.strlen(key))
    window = read_window(client.get(key) or b"")
    ends = [record.ends_ms for record in window.records]
    assert largest <= MAX_BYTES
    assert len(ends) <= MAX_RECORDS < checks
    assert ends == sorted(set(ends))
    assert all(end % BUCKET_MILLISECONDS == 0 for end in ends)
    # The header's sum is the units of the records it still counts, which is what the last
    # check answered; the records it no longer counts wait for a rewrite, a bounded few.
    now_ms = _redis_ms(client)
    live = [record for record in window.records if record.ends_ms > now_ms - WINDOW_MILLISECONDS]
    assert window.units == last.used == sum(record.units for record in window.records)
    assert len(live) <= LIVE_BUCKETS
    assert window.size_bytes == client.strlen(key)


def test_peeks_and_zero_amounts_write_nothing(
    engine: Engine, client: redis.Redis, prefix: str
) -> None:
    add_org(engine, "org_a", "free")
    service = make_service(engine, prefix)
    key = _window_key(prefix, "org_a")
    for _ in range(3):
        assert service.check("org_a", Quota.TASKS_PER_SECOND, NOW, consume=False).allowed
    assert client.exists(key) == 0
    assert service.check("org_a", Quota.TASKS_PER_SECOND, NOW, amount=5).used == 5
    stored = client.get(key)
    peek = service.check("org_a", Quota.TASKS_PER_SECOND, NOW, amount=3, consume=False)
    assert (peek.allowed, peek.used) == (True, 5)
    assert client.get(key) == stored
    # The script itself writes no record for zero units, consumed or not.
    counters = QuotaCounters(client)
    call = counters.window_call(_window_key(prefix, "org_zero"), f"{prefix}:gate", 10, hard=True)
    assert counters.run(call.args(0, True)) == 0 * 4 + 2
    assert client.exists(_window_key(prefix, "org_zero")) == 0
    assert counters.run(call.args(0, True)) == 2


def test_windows_and_month_counters_expire(
    engine: Engine, client: redis.Redis, prefix: str
) -> None:
    add_org(engine, "org_a", "free")  # 100 a second, hard
    service = make_service(engine, prefix)
    key = _window_key(prefix, "org_a")
    service.check("org_a", Quota.TASKS_PER_SECOND, NOW, amount=100)
    ttl = client.pttl(key)
    assert 0 < ttl <= KEY_TTL_MILLISECONDS
    header = read_window(client.get(key) or b"")
    assert _redis_ms(client) < header.live_until_ms <= _redis_ms(client) + KEY_TTL_MILLISECONDS
    # A denial neither writes nor extends the window's life.
    assert not service.check("org_a", Quota.TASKS_PER_SECOND, NOW).allowed
    assert 0 < client.pttl(key) <= ttl
    # Admissions written in place (SETRANGE) keep an expiry within the bound too.
    for _ in range(3):
        assert service.check("org_a", Quota.TASKS_PER_SECOND, NOW, consume=False).used == 100
    drop_prefix(client, prefix)
    for _ in range(20):
        service.check("org_a", Quota.TASKS_PER_SECOND, NOW)
        assert 0 < client.pttl(key) <= KEY_TTL_MILLISECONDS
    assert read_window(client.get(key) or b"").units == 20
    service.check("org_a", Quota.TASKS_PER_MONTH, NOW)
    month_key = f"{prefix}:{{org_a}}:tpm:2026-03"
    assert client.ttl(month_key) > 0


def test_old_window_keys_are_left_alone(engine: Engine, client: redis.Redis, prefix: str) -> None:
    """Workers of the release before keep a sorted set and a hash under `tps` and `tps:sum`;
    a new worker's checks neither read nor break them during a rolling deploy."""
    add_org(engine, "org_a", "free")
    old, old_sum = f"{prefix}:{{org_a}}:tps", f"{prefix}:{{org_a}}:tps:sum"
    client.zadd(old, {"1:60": 1})
    client.hset(old_sum, mapping={"sum": 60, "seq": 1})
    service = make_service(engine, prefix)
    assert service.check("org_a", Quota.TASKS_PER_SECOND, NOW, amount=100).used == 100
    assert (client.type(old), client.type(old_sum)) == (b"zset", b"hash")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[redis.Redis]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield redis.Redis.from_url(server.url)
    finally:
        server.stop()


@pytest.mark.parametrize("quota", [Quota.TASKS_PER_SECOND, Quota.TASKS_PER_MONTH])
def test_a_check_after_script_flush_loads_the_scripts_again(
    engine: Engine, private_redis: redis.Redis, quota: Quota
) -> None:
    add_org(engine, "org_a", "payg")
    service = QuotaService(private_redis, engine, BookCache(), key_prefix="flushed")
    assert service.check("org_a", quota, NOW).used == 1
    private_redis.script_flush()
    assert service.check("org_a", quota, NOW).used == 2
    assert service.check("org_a", quota, NOW).used == 3


def _race(
    service: QuotaService, quota: Quota, amounts: list[int], barrier: threading.Barrier
) -> list[QuotaDecision]:
    barrier.wait(timeout=30)
    return [service.check("org_race", quota, NOW, amount=amount) for amount in amounts]


@pytest.mark.parametrize("quota", [Quota.TASKS_PER_SECOND, Quota.TASKS_PER_MONTH])
def test_two_clients_racing_at_the_limit_never_over_admit(
    engine: Engine, prefix: str, quota: Quota
) -> None:
    add_org(engine, "org_race", "free")  # hard: 100 a second, 100,000 a month
    limit = 100 if quota is Quota.TASKS_PER_SECOND else 100_000
    # Each client has its own connection and service, as two processes would.
    services = [make_service(engine, prefix) for _ in range(2)]
    assert services[0].check("org_race", quota, NOW, amount=limit - 40).allowed
    amounts = [1, 2, 3] * 10  # 60 units each: together three times what is left
    barrier = threading.Barrier(2)
    results: list[list[QuotaDecision]] = [[], []]

    def run(index: int) -> None:
        results[index] = _race(services[index], quota, amounts, barrier)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    decisions = results[0] + results[1]
    assert len(decisions) == 2 * len(amounts)
    admitted = [decision for decision in decisions if decision.allowed]
    # Every admission counted itself within the limit; the denials saw no room for theirs.
    assert all(decision.used <= limit for decision in admitted)
    assert all(
        decision.used + decision.amount > limit for decision in decisions if not decision.allowed
    )
    assert any(not decision.allowed for decision in decisions)
    if quota is Quota.TASKS_PER_MONTH:  # nothing leaves a month: the admissions fill it exactly
        assert sum(decision.amount for decision in admitted) <= 40
        final = services[0].check("org_race", quota, NOW, consume=False)
        assert final.used == limit - 40 + sum(decision.amount for decision in admitted)


def test_an_amount_past_what_the_script_counts_exactly_is_refused(
    engine: Engine, prefix: str
) -> None:
    add_org(engine, "org_a", "free")
    service = make_service(engine, prefix)
    for quota in (Quota.TASKS_PER_SECOND, Quota.TASKS_PER_MONTH):
        service.check("org_a", quota, NOW, consume=False)  # prepared: the fast path refuses too
        with pytest.raises(QuotaRequestError, match="amount must be at most") as refused:
            service.check("org_a", quota, NOW, amount=2**53)
        assert refused.value.field == "amount"
        assert service.check("org_a", quota, NOW, consume=False).used == 0

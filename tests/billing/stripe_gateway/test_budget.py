"""The shared Stripe request budget on the real Redis: slots are spaced by 1/rate across
processes, nothing is reserved beyond the maximum wait, and acquire sleeps for its slot."""

from __future__ import annotations

import itertools
import multiprocessing
import uuid

import pytest
import redis

from billing.stripe_gateway.budget import LocalRequestBudget, RateLimitTimeout, RedisRequestBudget
from tests.conftest import REDIS_TEST_URL

pytestmark = pytest.mark.redis


def _reserve_many(url: str, key: str, rate: float, count: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    client = redis.Redis.from_url(url)
    budget = RedisRequestBudget(client, rate=rate, key=key, max_wait_seconds=3600)
    for _ in range(count):
        out.put(budget.reserve_slot()[1])


def test_slots_from_several_processes_never_exceed_the_rate() -> None:
    key = f"test:budget:{uuid.uuid4().hex}"
    rate, processes, each = 50.0, 4, 25
    queue: multiprocessing.Queue[int] = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_reserve_many, args=(REDIS_TEST_URL, key, rate, each, queue))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    slots = sorted(queue.get(timeout=30) for _ in range(processes * each))
    for worker in workers:
        worker.join(timeout=30)
    # 100 reservations at 50/s from 4 processes: every slot at least 20 ms after the previous.
    gaps = [later - earlier for earlier, later in itertools.pairwise(slots)]
    assert len(slots) == processes * each
    assert min(gaps) >= 20_000
    # ...and the schedule is dense: 100 slots span about 99 intervals, not more.
    assert slots[-1] - slots[0] <= 99 * 20_000 + 500_000


def test_reservation_beyond_max_wait_is_refused_and_reserves_nothing() -> None:
    client = redis.Redis.from_url(REDIS_TEST_URL)
    key = f"test:budget:{uuid.uuid4().hex}"
    budget = RedisRequestBudget(client, rate=1.0, key=key, max_wait_seconds=2.5)
    waits = [budget.reserve() for _ in range(3)]
    assert waits[0] == pytest.approx(0.0, abs=0.05)
    assert waits[2] == pytest.approx(2.0, abs=0.1)
    with pytest.raises(RateLimitTimeout, match="booked more than 2s ahead"):
        budget.reserve()
    tat_before = client.get(key)
    with pytest.raises(RateLimitTimeout):
        budget.reserve()
    assert client.get(key) == tat_before


def test_acquire_sleeps_until_its_slot() -> None:
    client = redis.Redis.from_url(REDIS_TEST_URL)
    slept: list[float] = []
    budget = RedisRequestBudget(
        client, rate=10.0, key=f"test:budget:{uuid.uuid4().hex}", sleep=slept.append
    )
    for _ in range(3):
        budget.acquire()
    assert len(slept) == 2  # the first request goes at once
    assert slept[-1] == pytest.approx(0.2, abs=0.05)


def test_local_budget_paces_within_a_process() -> None:
    slept: list[float] = []
    budget = LocalRequestBudget(rate=100.0, sleep=slept.append)
    for _ in range(5):
        budget.acquire()
    assert len(slept) == 4
    assert slept[-1] == pytest.approx(0.04, abs=0.01)


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        RedisRequestBudget(redis.Redis.from_url(REDIS_TEST_URL), rate=0)

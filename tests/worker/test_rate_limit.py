"""The quote rate limit: a token bucket per client address, refilled in time, bounded in size."""

from __future__ import annotations

from worker.web.rate_limit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_per_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(capacity=3, refill_per_second=0.5, clock=clock)
    assert [limiter.take("1.2.3.4") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("1.2.3.4") == 2  # one token comes back every 2 s
    clock.now += 1.0
    assert limiter.take("1.2.3.4") == 1  # half a token: one more second
    clock.now += 1.0
    assert limiter.take("1.2.3.4") == 0
    assert limiter.take("1.2.3.4") == 2


def test_each_address_has_its_own_bucket() -> None:
    limiter = RateLimiter(capacity=1, refill_per_second=1, clock=Clock())
    assert limiter.take("a") == 0
    assert limiter.take("a") == 1
    assert limiter.take("b") == 0


def test_a_bucket_never_holds_more_than_its_capacity() -> None:
    clock = Clock()
    limiter = RateLimiter(capacity=2, refill_per_second=1, clock=clock)
    clock.now += 3600
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 1]


def test_idle_addresses_are_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter(capacity=2, refill_per_second=1, clock=clock, max_clients=100)
    for n in range(100):
        limiter.take(f"old-{n}")
    clock.now += 10  # every old bucket is full again: nothing to remember
    limiter.take("new")
    assert limiter.client_count == 1
    for n in range(200):  # a flood of addresses, none idle: the older half goes
        limiter.take(f"flood-{n}")
    assert limiter.client_count <= 100
    assert [limiter.take("flood-199") for _ in range(2)] == [0, 1]  # still remembered


def test_the_limit_reads_as_documented() -> None:
    assert RateLimiter(capacity=60, refill_per_second=1).describe() == (
        "60 requests at once, then 1 per second, per client address"
    )

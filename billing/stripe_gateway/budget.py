"""The account-wide Stripe request budget shared by every worker process (GCRA over Redis).

Stripe limits requests per account (25/s in test mode, 100/s live), whatever number of worker
processes and machines send them. Each request first reserves a slot: the generic cell rate
algorithm keeps one "theoretical arrival time" (TAT) per account in Redis, and a Lua script
atomically moves it forward by one interval (1/rate seconds) and returns how long the caller must
wait for its slot. Callers sleep that long and then send, so requests leave evenly spaced and
fairly ordered, with no polling and no retry storms. Time is Redis's own clock (`TIME`), so
clock skew between worker machines does not matter.

`burst` lets that many requests go back to back after an idle spell; the default of 1 keeps the
spacing strict, which is what a per-second limiter on the other side wants.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

import redis

# KEYS[1]: the TAT key. ARGV: interval in microseconds, burst tolerance in microseconds,
# the maximum wait in microseconds a caller accepts. Returns {wait, slot} in microseconds
# (slot on Redis's clock), or {-1, 0} when the wait would exceed the maximum (nothing reserved).
_RESERVE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local slot = tat - tolerance
local wait = slot - now
if wait < 0 then wait = 0 end
if wait > max_wait then return {-1, 0} end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.floor((new_tat - now) / 1000) + 1000)
return {wait, now + wait}
"""


class RateLimitTimeout(RuntimeError):
    """The budget is reserved further ahead than the caller is willing to wait."""


class RequestBudget(Protocol):
    def acquire(self) -> float:
        """Block until this process may send one request; returns the seconds waited."""
        ...


@dataclass
class RedisRequestBudget:
    """A budget of `rate` requests per second shared through Redis by every process."""

    client: redis.Redis
    rate: float
    key: str = "billing:stripe:budget"
    burst: int = 1
    max_wait_seconds: float = 60.0
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"rate must be positive, got {self.rate}")
        self._script = self.client.register_script(_RESERVE)

    def reserve(self) -> float:
        """Reserve the next slot; returns the seconds until it (does not sleep)."""
        return self.reserve_slot()[0]

    def reserve_slot(self) -> tuple[float, int]:
        """Reserve the next slot: (seconds to wait, slot time in µs on Redis's clock)."""
        interval_us = round(1_000_000 / self.rate)
        tolerance_us = interval_us * (self.burst - 1)
        max_wait_us = round(self.max_wait_seconds * 1_000_000)
        reply = cast(
            list[int], self._script(keys=[self.key], args=[interval_us, tolerance_us, max_wait_us])
        )
        wait_us, slot_us = int(reply[0]), int(reply[1])
        if wait_us < 0:
            raise RateLimitTimeout(
                f"Stripe request budget {self.key!r} is booked more than "
                f"{self.max_wait_seconds:.0f}s ahead at {self.rate}/s"
            )
        return wait_us / 1_000_000, slot_us

    def acquire(self) -> float:
        wait = self.reserve()
        if wait > 0:
            self.sleep(wait)
        return wait


@dataclass
class LocalRequestBudget:
    """The same pacing within one process (tests and the in-process demo without Redis)."""

    rate: float
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._tat = 0.0

    def acquire(self) -> float:
        with self._lock:
            now = time.monotonic()
            slot = max(self._tat, now)
            self._tat = slot + 1.0 / self.rate
        wait = slot - now
        if wait > 0:
            self.sleep(wait)
        return max(wait, 0.0)


class UnlimitedBudget:
    """No pacing (unit tests against `responses`)."""

    def acquire(self) -> float:
        return 0.0

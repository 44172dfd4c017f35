"""A token bucket per client address, in this process: how often one address may ask for quotes.

Each address starts with `capacity` tokens and gets `refill_per_second` back, up to `capacity`;
a request takes one token or is refused with the seconds until the next one. The buckets live in
this process (several web processes each allow the limit), which is enough for a public,
side-effect-free calculator. Idle full buckets are forgotten, so memory stays bounded.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request


@dataclass
class _Bucket:
    tokens: float
    updated_at: float  # seconds on the limiter's monotonic clock


class RateLimiter:
    """`take(client)` returns 0 when the request may go on, else the seconds to wait."""

    def __init__(
        self,
        capacity: int,
        refill_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.capacity = capacity
        self.refill_per_second = refill_per_second
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    @property
    def client_count(self) -> int:
        """How many addresses the limiter remembers."""
        return len(self._buckets)

    def describe(self) -> str:
        return (
            f"{self.capacity} requests at once, then {self.refill_per_second:g} per second, "
            "per client address"
        )

    def take(self, client: str) -> int:
        """Take a token for `client`: 0 if there was one, else whole seconds until there is."""
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(client)
            if bucket is None:
                self._forget_idle(now)
                bucket = self._buckets[client] = _Bucket(float(self.capacity), now)
            elapsed = now - bucket.updated_at
            bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self.refill_per_second)
            bucket.updated_at = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0
            return max(1, math.ceil((1 - bucket.tokens) / self.refill_per_second))

    def _forget_idle(self, now: float) -> None:
        """Above `max_clients`, drop the buckets that have refilled (nothing to remember), then,
        if still too many, the least recently used half."""
        if len(self._buckets) < self._max_clients:
            return
        full_after = self.capacity / self.refill_per_second
        self._buckets = {
            client: bucket
            for client, bucket in self._buckets.items()
            if now - bucket.updated_at < full_after
        }
        if len(self._buckets) >= self._max_clients:
            recent = sorted(self._buckets.items(), key=lambda item: item[1].updated_at)
            self._buckets = dict(recent[len(recent) // 2 :])


def client_address(request: Request) -> str:
    """The peer address uvicorn reports (the client's own behind a proxy it trusts)."""
    return request.client.host if request.client else "unknown"

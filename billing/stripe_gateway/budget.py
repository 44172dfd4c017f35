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

Stripe also limits each endpoint — each named operation: method plus path template, whatever
the object id — to 25 requests/s unless noted; ``POST /v1/billing/meter_events`` takes 1,000/s
and, in live mode only, does not count against the global limit
(https://docs.stripe.com/rate-limits). So a request names its endpoint (`endpoint_of`) and
takes two slots, each from a TAT of its own in Redis: first its endpoint's, then, once that slot
has come, the global one. The order matters: reserving both at once would book the global slot
at the endpoint's later time and leave the requests of every other endpoint queued behind it.
Taking the global slot last keeps the global schedule dense and exact; the endpoint's request can
then leave later than its endpoint slot by at most the global wait, which is bounded by the
number of requests waiting at once divided by the global rate (0.1 s for ten at 100/s), well
inside the second of burst a per-second limiter tolerates (Stripe does not publish its algorithm;
the emulator models one second). Meter events count against the global budget too unless the
budget is built with `EndpointLimits.live()`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, cast
from urllib.parse import urlsplit

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


METER_EVENTS = "POST /v1/billing/meter_events"
# Stripe's own limits for the meter endpoints (requests per second); every other endpoint has
# the default. https://docs.stripe.com/rate-limits and stripe-python 16's v2 docstrings.
METER_ENDPOINT_RATES: Mapping[str, float] = {
    METER_EVENTS: 1000.0,
    "POST /v2/billing/meter_events": 1000.0,
    "POST /v2/billing/meter_event_stream": 10000.0,
}
# A path segment that is the API version or names an operation or a collection ("v1",
# "invoices", "create_preview"); anything else (cus_Nf…, in_1Q…: random letters with digits or
# capitals) is an object id.
_LITERAL_SEGMENT = re.compile(r"^(v[0-9]+|[a-z_]+)$")


def endpoint_of(method: str, url: str) -> str:
    """The endpoint a request counts against: ``"GET /v1/customers/{id}"`` for
    ``GET https://api.stripe.com/v1/customers/cus_Nf…?expand[]=x``."""
    segments = urlsplit(url).path.split("/")
    template = "/".join(s if not s or _LITERAL_SEGMENT.match(s) else "{id}" for s in segments)
    return f"{method.upper()} {template}"


@dataclass(frozen=True)
class EndpointLimits:
    """Per-endpoint rates. The default counts meter events against the global budget too:
    right in a sandbox (an assumption, see stripe_emulator.limits) and merely cautious in live
    mode, where `live()` lets them bypass it."""

    default_rate: float = 25.0
    rates: Mapping[str, float] = field(default_factory=lambda: dict(METER_ENDPOINT_RATES))
    outside_global: frozenset[str] = frozenset()

    @classmethod
    def live(cls) -> EndpointLimits:
        return cls(outside_global=frozenset(METER_ENDPOINT_RATES))

    def rate(self, endpoint: str) -> float:
        return self.rates.get(endpoint, self.default_rate)


class RequestBudget(Protocol):
    def acquire(self, endpoint: str | None = None) -> float:
        """Block until this process may send one request to `endpoint` (`endpoint_of`; None:
        the global budget only); returns the seconds waited."""
        ...


@dataclass
class RedisRequestBudget:
    """A budget of `rate` requests per second shared through Redis by every process, and of
    each endpoint's rate (`endpoints`) under keys ``{key}:endpoint:{endpoint}``."""

    client: redis.Redis
    rate: float
    key: str = "billing:stripe:budget"
    burst: int = 1
    max_wait_seconds: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    endpoints: EndpointLimits = field(default_factory=EndpointLimits)

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"rate must be positive, got {self.rate}")
        self._script = self.client.register_script(_RESERVE)

    def reserve(self, endpoint: str | None = None) -> float:
        """Reserve the next slot; returns the seconds until it (does not sleep)."""
        return self.reserve_slot(endpoint)[0]

    def endpoint_key(self, endpoint: str) -> str:
        return f"{self.key}:endpoint:{endpoint}"

    def reserve_slot(self, endpoint: str | None = None) -> tuple[float, int]:
        """Reserve the next slot of the global budget, or of `endpoint`'s own: (seconds to
        wait, slot time in µs on Redis's clock)."""
        if endpoint is None:
            return self._reserve(self.key, self.rate)
        return self._reserve(self.endpoint_key(endpoint), self.endpoints.rate(endpoint))

    def _reserve(self, key: str, rate: float) -> tuple[float, int]:
        interval_us = round(1_000_000 / rate)
        tolerance_us = interval_us * (self.burst - 1)
        max_wait_us = round(self.max_wait_seconds * 1_000_000)
        reply = cast(
            list[int], self._script(keys=[key], args=[interval_us, tolerance_us, max_wait_us])
        )
        wait_us, slot_us = int(reply[0]), int(reply[1])
        if wait_us < 0:
            raise RateLimitTimeout(
                f"Stripe request budget {key!r} is booked more than "
                f"{self.max_wait_seconds:.0f}s ahead at {rate}/s"
            )
        return wait_us / 1_000_000, slot_us

    def _wait(self, seconds: float) -> float:
        if seconds > 0:
            self.sleep(seconds)
        return seconds

    def acquire(self, endpoint: str | None = None) -> float:
        waited = 0.0
        if endpoint is not None:
            waited += self._wait(self.reserve(endpoint))
            if endpoint in self.endpoints.outside_global:
                return waited
        return waited + self._wait(self.reserve())


@dataclass
class LocalRequestBudget:
    """The same pacing within one process (tests and the in-process demo without Redis)."""

    rate: float
    sleep: Callable[[float], None] = time.sleep
    endpoints: EndpointLimits = field(default_factory=EndpointLimits)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._tat: dict[str | None, float] = {}

    def _wait_for_slot(self, endpoint: str | None) -> float:
        rate = self.rate if endpoint is None else self.endpoints.rate(endpoint)
        with self._lock:
            now = time.monotonic()
            slot = max(self._tat.get(endpoint, 0.0), now)
            self._tat[endpoint] = slot + 1.0 / rate
        wait = slot - now
        if wait > 0:
            self.sleep(wait)
        return max(wait, 0.0)

    def acquire(self, endpoint: str | None = None) -> float:
        waited = 0.0
        if endpoint is not None:
            waited += self._wait_for_slot(endpoint)
            if endpoint in self.endpoints.outside_global:
                return waited
        return waited + self._wait_for_slot(None)


class UnlimitedBudget:
    """No pacing (unit tests against `responses`)."""

    def acquire(self, endpoint: str | None = None) -> float:  # noqa: ARG002 - the protocol
        return 0.0

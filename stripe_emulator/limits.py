"""Stripe's documented request-rate limits: global, per endpoint, and the meter endpoints' own.

Source: https://docs.stripe.com/rate-limits ("Rate limits"). Limits are requests per second per
account. "The global rate limit applies to the total API usage per account, while some endpoints
have their own additional limits":

- global: live mode 100 requests/s, sandbox 25 requests/s;
- individual API endpoints, "unless noted otherwise": 25 requests/s. Stripe "considers each named
  API operation a separate endpoint": ``POST /v1/payment_intents`` and
  ``GET /v1/payment_intents/{id}`` are two endpoints, and reads of different ids count against
  the same one — so the endpoint key here is the route's method plus path *template*;
- ``POST /v1/billing/meter_events``: 1,000 calls/s, and in live mode "subject to a separate rate
  limit, and don't count against the basic limits" (the older copy of the page in
  ``STRIPE-NOTES.md``); ``POST /v2/billing/meter_events`` 1,000/s and the v2 meter event stream
  10,000 requests/s of up to 100 events each (stripe-python 16's ``MeterEventStreamService``
  docstring: "Supports up to 10,000 requests per second in livemode"), also outside the global
  limit in live mode. ``POST /v2/billing/meter_event_session`` has no documented limit of its
  own: the default per-endpoint one applies.

Assumptions (each undocumented or unverified):

- Sandbox meter events: the stored page's sandbox sentence is truncated; here they keep their
  own endpoint limit *and* count against the sandbox's global 25/s, the stricter reading.
- Each limit is a token bucket refilled at its rate with a capacity of one second of requests
  (``EmulatorConfig.rate_limit_burst_seconds``); a refused request consumes no token. Stripe's
  own algorithm is not published.
- A refused request is answered 429 with ``{"error": {"type": "invalid_request_error",
  "code": "rate_limit", "message": …}}`` (stripe-python maps it to ``RateLimitError``) and a
  ``Stripe-Rate-Limited-Reason`` header (``global-rate`` or ``endpoint-rate``), as transcriptions
  of the current page describe. No ``Stripe-Should-Retry`` header is sent: Stripe documents that
  header for lock timeouts (a 429 with ``code=lock_timeout``), not for rate limits, and without it
  stripe-python leaves 429s to the caller (``billing.stripe_gateway.http`` backs off).
- Concurrency limiters and the Files and Search limits are not modelled (the emulator serves
  neither Files nor Search). The per-subscription caps (quantity updates, new invoices) are
  enforced in the same modes by ``stripe_emulator.caps``, on the subscription's own clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, cast

LimitsMode = Literal["live", "sandbox", "none"]
LIMITS_MODES: tuple[LimitsMode, ...] = ("live", "sandbox", "none")

METER_EVENTS = "POST /v1/billing/meter_events"
V2_METER_EVENTS = "POST /v2/billing/meter_events"
V2_METER_EVENT_STREAM = "POST /v2/billing/meter_event_stream"
# "List of meter events to include in the request. Supports up to 100 events per request."
# (stripe-python 16, stripe/params/v2/billing/_meter_event_stream_create_params.py); a larger
# request is refused by stripe_emulator.meter_stream.
METER_EVENT_STREAM_MAX_EVENTS = 100
_METER_ENDPOINTS = {METER_EVENTS: 1000.0, V2_METER_EVENTS: 1000.0, V2_METER_EVENT_STREAM: 10000.0}


@dataclass(frozen=True)
class LimitProfile:
    """The limits of one mode; ``None`` means no such limit."""

    global_rps: float | None
    endpoint_rps: float | None
    # Endpoints whose own limit replaces the per-endpoint default.
    endpoint_overrides: dict[str, float] = field(default_factory=dict)
    # Endpoints that do not count against the global limit.
    outside_global: frozenset[str] = frozenset()

    def endpoint_limit(self, endpoint: str) -> float | None:
        return self.endpoint_overrides.get(endpoint, self.endpoint_rps)


PROFILES: dict[LimitsMode, LimitProfile] = {
    "live": LimitProfile(100.0, 25.0, dict(_METER_ENDPOINTS), frozenset(_METER_ENDPOINTS)),
    "sandbox": LimitProfile(25.0, 25.0, dict(_METER_ENDPOINTS)),
    "none": LimitProfile(None, None),
}


def profile(mode: str) -> LimitProfile:
    """The profile of ``mode``; anything else is refused naming the valid modes."""
    if mode not in PROFILES:
        raise ValueError(f"limits must be one of {', '.join(LIMITS_MODES)}, got {mode!r}")
    return PROFILES[cast(LimitsMode, mode)]


@dataclass
class _Bucket:
    rps: float
    capacity: float
    tokens: float
    refilled_at: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.refilled_at) * self.rps)
        self.refilled_at = now


class Limiter:
    """Token buckets for the global limit and each endpoint's; not thread-safe (the caller
    holds ``Traffic``'s lock)."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}

    def reset(self) -> None:
        self._buckets.clear()

    def _bucket(self, key: str, rps: float, burst_seconds: float, now: float) -> _Bucket:
        capacity = max(1.0, rps * burst_seconds)
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rps != rps or bucket.capacity != capacity:
            bucket = _Bucket(rps, capacity, capacity, now)  # a changed limit starts full
            self._buckets[key] = bucket
        bucket.refill(now)
        return bucket

    def admit(
        self,
        endpoint: str,
        now: float,
        limits: LimitProfile,
        *,
        global_override: float | None = None,
        burst_seconds: float = 1.0,
    ) -> str | None:
        """Take one token from every limit ``endpoint`` is under, or none if any is empty.

        Returns ``None`` when admitted, else the ``Stripe-Rate-Limited-Reason`` of the first
        empty bucket (the global one is checked first). ``global_override`` replaces the
        profile's global rate (the ``rate_limit_rps`` knob)."""
        checks: list[tuple[str, _Bucket]] = []
        global_rps = global_override if global_override else limits.global_rps
        if global_rps and endpoint not in limits.outside_global:
            checks.append(("global-rate", self._bucket("*", global_rps, burst_seconds, now)))
        endpoint_rps = limits.endpoint_limit(endpoint)
        if endpoint_rps:
            bucket = self._bucket(endpoint, endpoint_rps, burst_seconds, now)
            checks.append(("endpoint-rate", bucket))
        for reason, bucket in checks:
            if bucket.tokens < 1.0:
                return reason
        for _, bucket in checks:
            bucket.tokens -= 1.0
        return None

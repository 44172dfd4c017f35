"""Load and fault control for API requests: the rate limiter, injected faults, and counters.

Rate limits are Stripe's documented ones for the configured mode (``EmulatorConfig.limits``:
global, per endpoint, meter endpoints; see ``stripe_emulator.limits`` for the sources and the
assumptions), with ``rate_limit_rps`` replacing the mode's global rate when set.  Rejected
requests are answered 429 with ``code=rate_limit``, a ``Stripe-Rate-Limited-Reason`` header and
no ``Stripe-Should-Retry`` header, so stripe-python does not retry them; they are counted per
reason and per endpoint.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any, Literal

from stripe_emulator.config import EmulatorConfig
from stripe_emulator.limits import Limiter, profile

Verdict = Literal["ok", "rate_limited", "error", "timeout"]


class Traffic:
    """Decides the fate of each API request and counts what happened."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._random = random.Random(config.seed)  # noqa: S311 - fault injection, not crypto
        self._limiter = Limiter()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._limiter.reset()
            self.requests_total = 0
            self.by_route: Counter[str] = Counter()
            self.by_status: Counter[int] = Counter()
            self.rate_limited = 0
            self.rate_limited_by_reason: Counter[str] = Counter()
            self.rate_limited_by_route: Counter[str] = Counter()
            self.injected_errors = 0
            self.injected_timeouts = 0
            self.idempotent_replays = 0
            self.first_at: float | None = None
            self.last_at: float | None = None
            self.started_at = time.time()

    def _rate_limited(self, route_key: str, now: float) -> str | None:
        cfg = self.config
        return self._limiter.admit(
            route_key,
            now,
            profile(cfg.limits),
            global_override=cfg.rate_limit_rps,
            burst_seconds=cfg.rate_limit_burst_seconds,
        )

    def admit(self, _method: str, path: str, route_key: str) -> tuple[Verdict, Verdict, str | None]:
        """Count the request and return (verdict now, fault to apply after execution, the
        ``Stripe-Rate-Limited-Reason`` when the verdict is ``rate_limited``)."""
        now = time.monotonic()
        with self._lock:
            self.requests_total += 1
            self.by_route[route_key] += 1
            self.first_at = self.first_at or time.time()
            self.last_at = time.time()
            reason = self._rate_limited(route_key, now)
            if reason is not None:
                self.rate_limited += 1
                self.rate_limited_by_reason[reason] += 1
                self.rate_limited_by_route[route_key] += 1
                return "rate_limited", "ok", reason
            fault = self._fault(path)
            if fault == "ok":
                return "ok", "ok", None
            if fault == "error":
                self.injected_errors += 1
            else:
                self.injected_timeouts += 1
            if self.config.fault_phase == "after":
                return "ok", fault, None
            return fault, "ok", None

    def _fault(self, path: str) -> Verdict:
        cfg = self.config
        if cfg.fault_path_prefix and not path.startswith(cfg.fault_path_prefix):
            return "ok"
        if cfg.fail_next > 0:
            cfg.fail_next -= 1
            return "error"
        if cfg.timeout_next > 0:
            cfg.timeout_next -= 1
            return "timeout"
        if cfg.error_rate and self._random.random() < cfg.error_rate:
            return "error"
        if cfg.timeout_rate and self._random.random() < cfg.timeout_rate:
            return "timeout"
        return "ok"

    def record_status(self, status: int) -> None:
        with self._lock:
            self.by_status[status] += 1

    def record_replay(self) -> None:
        with self._lock:
            self.idempotent_replays += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            span = (self.last_at - self.first_at) if self.first_at and self.last_at else 0.0
            ok = sum(n for status, n in self.by_status.items() if status < 400)
            return {
                "started_at": self.started_at,
                "first_request_at": self.first_at,
                "last_request_at": self.last_at,
                "active_seconds": span,
                "requests_total": self.requests_total,
                "requests_ok": ok,
                "requests_by_route": dict(self.by_route),
                "responses_by_status": {str(k): v for k, v in self.by_status.items()},
                "rate_limited_total": self.rate_limited,
                "rate_limited_by_reason": dict(self.rate_limited_by_reason),
                "rate_limited_by_route": dict(self.rate_limited_by_route),
                "limits": self.config.limits,
                "injected_errors_total": self.injected_errors,
                "injected_timeouts_total": self.injected_timeouts,
                "idempotent_replays_total": self.idempotent_replays,
                "requests_per_second": self.requests_total / span if span > 0 else None,
                "ok_per_second": ok / span if span > 0 else None,
            }

"""Stripe test clocks (test mode and the emulator): simulated time for a month of billing."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from billing.stripe_gateway import convert
from billing.stripe_gateway.gateway import StripeGateway
from billing.stripe_gateway.params import check_idempotency_key


@dataclass(frozen=True)
class StripeTestClock:
    stripe_test_clock_id: str
    frozen_at: datetime
    status: str  # ready | advancing | internal_failure


class TestClocks:
    """Create and advance test clocks through the gateway's client (POSTs carry our keys)."""

    __test__ = False  # not a pytest test class

    def __init__(
        self, gateway: StripeGateway, *, poll_seconds: float = 0.5, timeout_seconds: float = 300
    ) -> None:
        self.gateway = gateway
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds

    def create(self, frozen_at: datetime, *, name: str, idempotency_key: str) -> StripeTestClock:
        params: dict[str, Any] = {"frozen_time": convert.to_unix(frozen_at), "name": name}
        options = {"idempotency_key": check_idempotency_key(idempotency_key)}
        clock = self.gateway._call(
            lambda: self.gateway.client.v1.test_helpers.test_clocks.create(
                params,  # type: ignore[arg-type]
                options,  # type: ignore[arg-type]
            )
        )
        return _clock(clock)

    def retrieve(self, stripe_test_clock_id: str) -> StripeTestClock:
        return _clock(
            self.gateway._call(
                lambda: self.gateway.client.v1.test_helpers.test_clocks.retrieve(
                    stripe_test_clock_id
                )
            )
        )

    def advance(
        self, stripe_test_clock_id: str, to_at: datetime, *, idempotency_key: str
    ) -> StripeTestClock:
        """Advance and wait until Stripe has run every effect up to `to_at` (status ready)."""
        params: dict[str, Any] = {"frozen_time": convert.to_unix(to_at)}
        options = {"idempotency_key": check_idempotency_key(idempotency_key)}
        clock = _clock(
            self.gateway._call(
                lambda: self.gateway.client.v1.test_helpers.test_clocks.advance(
                    stripe_test_clock_id,
                    params,  # type: ignore[arg-type]
                    options,  # type: ignore[arg-type]
                )
            )
        )
        deadline = time.monotonic() + self.timeout_seconds
        while clock.status == "advancing" and time.monotonic() < deadline:
            time.sleep(self.poll_seconds)
            clock = self.retrieve(stripe_test_clock_id)
        if clock.status != "ready":
            raise RuntimeError(
                f"test clock {stripe_test_clock_id} is {clock.status!r} after "
                f"advancing to {to_at.isoformat()}"
            )
        return clock


def _clock(obj: Any) -> StripeTestClock:
    frozen = convert.from_unix(convert.attr(obj, "frozen_time"))
    assert frozen is not None
    return StripeTestClock(
        str(convert.attr(obj, "id")), frozen, str(convert.attr(obj, "status") or "ready")
    )

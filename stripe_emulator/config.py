"""Emulator settings: time, invoicing defaults, and the fault and load knobs a benchmark turns.

Every field can be changed at run time through ``POST /_emulator/config`` (JSON with any subset of
the field names below) or ``EmulatorState.configure(**fields)``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from stripe_emulator.limits import LimitsMode, profile

FaultPhase = Literal["before", "after"]


@dataclass
class EmulatorConfig:
    """Knobs of one emulator instance; all durations are seconds unless the name says ``_ms``."""

    # --- clock -------------------------------------------------------------------------------
    # Emulator-wide frozen "wall clock" (unix seconds) for customers without a test clock.
    # None = the real wall clock.  Setting it runs every time-based effect that became due.
    frozen_time: int | None = None
    # Stripe: "Each test clock can have up to three customers"
    # (https://docs.stripe.com/billing/testing/test-clocks, Limitations). None = no limit.
    test_clock_max_customers: int | None = 3
    # --- invoicing -----------------------------------------------------------------------------
    grace_period_seconds: int = 3600  # Stripe's default invoice finalization grace period
    # Simulated payment: charge_automatically invoices are paid as soon as they finalize
    # (the emulator has no payment methods; real test-mode customers without a card would not).
    auto_pay: bool = True
    # Whether a draft's metered lines follow usage reported in the grace period at once (True),
    # or only at finalization (False). Stripe bills the meter's value when the draft finalizes,
    # but its draft "might not immediately reflect recently received meter events"
    # (https://docs.stripe.com/billing/subscriptions/usage-based/recording-usage): False models
    # a draft that still shows a stale quantity while the meter's summaries are current.
    draft_follows_usage: bool = True
    # Whether the account may use the v2 meter event stream; False answers its session endpoint
    # 404, as for an account without v2 access (stripe_emulator.meter_stream).
    meter_event_stream: bool = True
    # Real (monotonic) seconds after its receipt before a meter event counts in meter event
    # summaries, draft and upcoming invoice lines and at finalization: Stripe aggregates meter
    # events asynchronously (stripe_emulator.metering). 0 = at once.
    meter_aggregation_delay_seconds: float = 0.0
    # --- load ------------------------------------------------------------------------------------
    latency_ms: int = 0  # added to every API request (not to control endpoints)
    # Stripe's documented rate limits (stripe_emulator.limits): "live" (global 100/s), "sandbox"
    # (global 25/s), both with 25/s per endpoint and the meter endpoints' own; "none" = unlimited.
    limits: LimitsMode = "none"
    # Replaces the mode's global rate (a token bucket shared by all clients); None = the mode's.
    rate_limit_rps: float | None = None
    rate_limit_burst_seconds: float = 1.0  # every bucket's capacity = its rate × this
    # --- faults ----------------------------------------------------------------------------------
    error_rate: float = 0.0  # probability of an injected 500 per request
    fail_next: int = 0  # the next N matching requests get an injected 500
    timeout_rate: float = 0.0  # probability of an injected timeout per request
    timeout_next: int = 0  # the next N matching requests time out
    timeout_hold_ms: int = 2000  # how long a timed-out request is held before the socket closes
    fault_path_prefix: str | None = None  # only requests whose path starts with this are faulted
    # "before": the fault happens before the request executes (nothing changes, nothing saved);
    # "after": the request executes and its response is saved under the idempotency key, then
    # the client gets the 500 / dropped connection instead (a response lost in transit).
    fault_phase: FaultPhase = "before"
    seed: int = 0  # seeds the random generator used by error_rate/timeout_rate
    # --- webhooks --------------------------------------------------------------------------------
    webhook_attempts: int = 4  # delivery attempts per event and endpoint
    webhook_timeout_seconds: float = 5.0
    webhook_retry_base_seconds: float = 0.2  # backoff base: base × 2^attempt

    def __post_init__(self) -> None:
        profile(self.limits)  # refuse an unknown mode at once, not on the first request

    def update(self, **changes: Any) -> None:
        """Apply a partial update; unknown names raise ``KeyError``, a bad mode ``ValueError``."""
        names = {f.name for f in fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise KeyError(f"unknown emulator config fields: {sorted(unknown)}")
        if "limits" in changes:
            profile(changes["limits"])
        if float(changes.get("meter_aggregation_delay_seconds", 0.0)) < 0:
            raise ValueError("meter_aggregation_delay_seconds must be 0 or more")
        for name, value in changes.items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

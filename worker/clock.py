"""The worker's clock: the wall clock in production, a simulated instant under `billing simulate`.

Everything in `worker/` that needs "now" asks `clock.now()`; the domain never reads a clock (it
takes `now` as an argument). A simulation in this process installs its own source with
`installed(...)`; Celery workers started by a simulation read the instant the simulator wrote to
Redis under `BILLING_SIMULATED_CLOCK_KEY`. Nothing else differs between simulation and
production.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from billing.core.periods import parse_instant
from worker.settings import Settings, get_settings

ClockSource = Callable[[], datetime]

_source: ClockSource | None = None


def now(settings: Settings | None = None) -> datetime:
    """The current instant, timezone-aware UTC."""
    if _source is not None:
        return _source()
    key = (settings or get_settings()).simulated_clock_key
    if key:
        return _simulated(key, settings)
    return datetime.now(UTC)


def wall_now() -> datetime:
    """The real wall clock, even under a simulation: for what the broker itself keeps time by
    (a message's eta, the task outbox's timestamps), never for billing."""
    return datetime.now(UTC)


def _simulated(key: str, settings: Settings | None) -> datetime:
    from worker import composition  # noqa: PLC0415 - only simulations read Redis for time

    raw = composition.redis_client(settings).get(key)
    if raw is None:
        raise RuntimeError(f"BILLING_SIMULATED_CLOCK_KEY {key!r} holds no instant in Redis")
    return parse_instant(raw.decode() if isinstance(raw, bytes) else str(raw))


@contextmanager
def installed(source: ClockSource) -> Iterator[None]:
    """Within the block, `now()` answers `source()` (a simulation in this process)."""
    global _source  # noqa: PLW0603 - the one process-wide clock, set only by simulations
    previous, _source = _source, source
    try:
        yield
    finally:
        _source = previous

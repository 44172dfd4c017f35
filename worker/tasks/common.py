"""What every task shares: the instant it runs for, and one set of retry options."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import redis
from sqlalchemy.exc import OperationalError

from billing.core.errors import TransientBillingError
from billing.core.locks import LockBusyError
from billing.core.periods import parse_instant
from worker import clock

# Transient: Stripe 429/5xx/connection errors (after the HTTP client's own retries), another
# worker holding the org's lock, the database or Redis briefly unreachable. Permanent errors
# (a refused request) are recorded by the services and not retried.
RETRYABLE: tuple[type[Exception], ...] = (
    TransientBillingError,
    LockBusyError,
    OperationalError,
    redis.ConnectionError,
)

# Every task's options: `@app.task(name=..., **TASK_OPTIONS)`.
TASK_OPTIONS: dict[str, Any] = {
    "autoretry_for": RETRYABLE,
    "retry_backoff": 2,  # 2 s, 4 s, 8 s … with jitter, capped below
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 12,
}


def instant(now: str | None) -> datetime:
    """The task's `now`: given (ISO 8601: a replay, a test clock) or the worker's clock."""
    return parse_instant(now) if now else clock.now()

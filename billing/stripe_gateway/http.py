"""The HTTP client under stripe-python: the shared request budget and 429 back-off.

Every HTTP attempt (stripe-python's own retries of 5xx and connection errors included) first
takes a slot of its endpoint's budget and of the account-wide one
(billing.stripe_gateway.budget), so all worker processes together stay under Stripe's global
and per-endpoint rate limits. A 429 that still comes back — the limit is
shared with anything else using the account — is retried here after an exponential, jittered
pause, with the identical request and so the identical `Idempotency-Key`; stripe-python itself
does not retry 429s unless Stripe sends `Stripe-Should-Retry: true`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import stripe

from billing.stripe_gateway.budget import RequestBudget, endpoint_of


class RequestObserver(Protocol):
    def __call__(self, method: str, url: str, status: int) -> None:
        """Told of every HTTP attempt's answer (metrics: requests and 429s per endpoint)."""


class BudgetedRequestsClient(stripe.RequestsClient):
    """`stripe.RequestsClient` that paces requests and retries rate-limited ones."""

    def __init__(
        self,
        budget: RequestBudget,
        *,
        timeout: float,
        max_rate_limit_retries: int = 6,
        sleep: Callable[[float], None] = time.sleep,
        observer: RequestObserver | None = None,
    ) -> None:
        super().__init__(timeout=timeout)
        self.observer = observer
        self.budget = budget
        self.max_rate_limit_retries = max_rate_limit_retries
        self.sleep = sleep
        self.rate_limited_total = 0  # 429s seen (and retried) by this process

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        attempt = 0
        endpoint = endpoint_of(method, url)
        while True:
            self.budget.acquire(endpoint)
            content, status, response_headers = super().request(method, url, headers, post_data)
            if self.observer is not None:
                self.observer(method, url, status)
            if status != 429 or attempt >= self.max_rate_limit_retries:
                return content, status, response_headers
            self.rate_limited_total += 1
            attempt += 1
            # 0.25 s, 0.5 s, 1 s … capped at 8 s, with full jitter so processes spread out.
            self.sleep(random.uniform(0, min(8.0, 0.25 * 2 ** (attempt - 1))))  # noqa: S311

"""The gateway's v2 meter event stream: a cached session token and batches of up to 100 events.

Stripe's high-throughput path (https://docs.stripe.com/api/v2/billing-meter-stream; stripe-python
16 `client.v2.billing.meter_event_session` / `meter_event_stream`): a session created with the
secret key gives an `authentication_token` "only valid for 15 minutes"; the stream takes that
token as its API key, "up to 100 events per request", "up to 10,000 requests per second", and
validates the events asynchronously (an accepted request says nothing about each event; Stripe's
meter event summaries do). A mixin of `StripeGateway` (billing/stripe_gateway/gateway.py), which
provides the client and the write guard.

The token is cached per gateway instance and process, behind a lock so that threads share one
session. It is refreshed 60 s before it expires, measured on this process's monotonic clock
from the session's own lifetime (`expires_at − created`), so neither clock skew nor an emulator
on frozen time makes it look stale; and once more when the stream answers
`TemporarySessionExpiredError`. When the account refuses sessions (401, 403 or 404: no v2 access
or a restricted key without the permission) `MeterStreamUnavailable` is raised, and remembered
for five minutes so that a close of many orgs does not ask again for each.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import stripe

from billing.core.errors import BillingError, MeterStreamUnavailable, TransientBillingError
from billing.core.money import format_decimal
from billing.stripe_gateway.records import MeterEventInput

if TYPE_CHECKING:
    from stripe.params.v2.billing import MeterEventStreamCreateParams

T = TypeVar("T")
STREAM_BATCH = 100  # "Supports up to 100 events per request."
REFRESH_BEFORE_SECONDS = 60.0
UNAVAILABLE_MEMORY_SECONDS = 300.0
_REFUSED = (401, 403, 404)
_STATE_LOCK = threading.Lock()


@dataclass
class _StreamState:
    pid: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    token: str | None = None
    refresh_at: float = 0.0  # time.monotonic()
    unavailable_until: float = 0.0
    unavailable_reason: str = ""
    sessions_created: int = 0


def stream_event(event: MeterEventInput) -> dict[str, Any]:
    """One event in the stream's JSON shape: string values, an RFC 3339 timestamp."""
    at = event.timestamp_at.astimezone(UTC)
    return {
        "event_name": event.event_name,
        "identifier": event.identifier,
        "payload": {
            "stripe_customer_id": event.stripe_customer_id,
            "value": format_decimal(Decimal(event.value)),
        },
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def batch_key(events: list[dict[str, Any]]) -> str:
    """The idempotency key of one stream request: the same events give the same key."""
    digest = hashlib.sha256(json.dumps(events, sort_keys=True).encode()).hexdigest()
    return f"meter-stream:{digest[:48]}"


class MeterStream:
    @property
    def client(self) -> stripe.StripeClient:
        raise NotImplementedError

    def _call(self, fn: Callable[[], T]) -> T:
        raise NotImplementedError

    def _write(self, fn: Callable[[], T]) -> T:
        raise NotImplementedError

    def send_meter_events(self, events: Sequence[MeterEventInput]) -> None:
        """Report `events` through the stream, in requests of at most 100. Accepted is not
        counted: Stripe validates each event later and drops a repeated identifier."""
        for start in range(0, len(events), STREAM_BATCH):
            batch = [stream_event(e) for e in events[start : start + STREAM_BATCH]]
            self._post_stream({"events": batch}, batch_key(batch))  # type: ignore[typeddict-item]

    @property
    def meter_event_sessions_created(self) -> int:
        """Sessions this process created (a figure for benchmarks)."""
        return self._stream_state().sessions_created

    def _stream_state(self) -> _StreamState:
        with _STATE_LOCK:  # two threads' first sends must share one state (and one session)
            state: _StreamState | None = self.__dict__.get("_meter_stream")
            if state is None or state.pid != os.getpid():  # a forked worker starts afresh
                state = _StreamState(os.getpid())
                self.__dict__["_meter_stream"] = state
            return state

    def _post_stream(self, params: MeterEventStreamCreateParams, idempotency_key: str) -> None:
        stale: str | None = None
        for _ in range(2):
            token = self._meter_event_token(stale)
            options: stripe.RequestOptions = {"api_key": token, "idempotency_key": idempotency_key}
            try:
                self._stream_once(params, options)
            except BillingError as exc:
                if not isinstance(exc.__cause__, stripe.TemporarySessionExpiredError):
                    raise
                stale = token
                continue
            return
        raise TransientBillingError("stripe meter event session expired twice in a row")

    def _stream_once(
        self, params: MeterEventStreamCreateParams, options: stripe.RequestOptions
    ) -> None:
        create = self.client.v2.billing.meter_event_stream.create
        self._write(lambda: create(params, options))

    def _meter_event_token(self, stale: str | None) -> str:
        """The cached session token, or a new session's when it is due for refresh or `stale`."""
        state = self._stream_state()
        with state.lock:
            now = time.monotonic()
            if state.token is not None and state.token != stale and now < state.refresh_at:
                return state.token
            if now < state.unavailable_until:
                raise MeterStreamUnavailable(state.unavailable_reason)
            try:
                session = self._call(self.client.v2.billing.meter_event_session.create)
            except BillingError as exc:
                if exc.http_status not in _REFUSED:
                    raise
                state.unavailable_until = now + UNAVAILABLE_MEMORY_SECONDS
                state.unavailable_reason = f"meter event sessions refused: {exc}"
                raise MeterStreamUnavailable(
                    state.unavailable_reason, code=exc.code, http_status=exc.http_status
                ) from exc
            lifetime = datetime.fromisoformat(session.expires_at) - datetime.fromisoformat(
                session.created
            )
            state.token = session.authentication_token
            state.refresh_at = now + lifetime.total_seconds() - REFRESH_BEFORE_SECONDS
            state.sessions_created += 1
            return state.token

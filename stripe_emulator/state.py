"""The thread-safe emulator state: executes API calls under one lock and offers test helpers.

Idempotency (Stripe's documented v1 rules): every POST (and DELETE, whose cancellations have
side effects such as a final invoice) with an ``Idempotency-Key`` is keyed by
(API key, idempotency key); the first response whose execution began — 2xx, or a 5xx raised
while executing — is saved and replayed for the same method, path and params; different
params (or path) answer 400 ``idempotency_error``; validation errors (4xx raised by a handler
before it changes anything) are not saved, so the request may be retried.  Keys are kept 24 h
of real time.  GET requests are not idempotency-keyed.  (Stripe's page says keys are for
creating or updating objects; stripe-python 16 sends the header on any request given one, so the
emulator honours it on DELETE rather than answering a retried cancel with a 400.)

The account clock ("wall clock") is the real time unless ``EmulatorConfig.frozen_time`` is set;
effects due on it (renewals, finalizations of customers without a test clock) run at the start
of each API request and whenever the frozen time is moved.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from stripe_emulator import (
    cancellation,
    catalog,
    clocks,
    event_destinations,
    invoice_items,
    invoicing,
    meter_stream,
    metering,
    preview,
    subscription_items,
    subscriptions,
    webhooks,
)
from stripe_emulator.config import EmulatorConfig
from stripe_emulator.cycles import due_at, run_due
from stripe_emulator.errors import ApiError
from stripe_emulator.forms import Params, decimal_str, fingerprint
from stripe_emulator.routing import Route, call
from stripe_emulator.store import Store
from stripe_emulator.traffic import Traffic

_MODULES = (
    cancellation,
    catalog,
    clocks,
    event_destinations,
    invoice_items,
    invoicing,
    meter_stream,
    metering,
    preview,
    subscription_items,
    subscriptions,
    webhooks,
)  # routes
IDEMPOTENCY_TTL = 86_400


@dataclass
class SavedResponse:
    """A response stored under an idempotency key."""

    method: str
    path: str
    fingerprint: str
    status: int
    body: dict[str, Any]
    saved_at: float


class EmulatorState:
    """Everything one emulated Stripe account holds, plus the machinery around it."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.lock = threading.RLock()
        self.store = Store(frozen_time=self.config.frozen_time, config=self.config)
        self.traffic = Traffic(self.config)
        self.dispatcher = webhooks.Dispatcher(self.config)
        self._saved: dict[tuple[str, str], SavedResponse] = {}
        self._last_tick: int | None = None

    # ----- request execution ---------------------------------------------------------------------
    def execute(
        self,
        matched: Route,
        params: Params,
        ids: tuple[str, ...],
        *,
        method: str,
        path: str,
        api_key: str,
        idempotency_key: str | None,
        request_id: str,
    ) -> tuple[int, dict[str, Any], bool]:
        """Run one API call; returns (status, body, replayed)."""
        with self.lock:
            keyed = idempotency_key and method in ("POST", "DELETE")
            key = (api_key, idempotency_key) if keyed else None
            fp = fingerprint(params)
            if key is not None:
                saved = self._saved.get(key)
                if saved is not None and time.time() - saved.saved_at > IDEMPOTENCY_TTL:
                    del self._saved[key]
                    saved = None
                if saved is not None:
                    if (saved.method, saved.path, saved.fingerprint) != (method, path, fp):
                        message = (
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with. Try using a key other than "
                            f"'{idempotency_key}' if you meant to execute a different request."
                        )
                        error = ApiError(400, message, type_="idempotency_error")
                        return 400, error.body(request_id), False
                    return saved.status, saved.body, True
            self.store.request_id = request_id
            self.tick()
            try:
                body = call(self.store, matched, params, ids)
                status = 200
            except ApiError as exc:
                return exc.status, exc.body(request_id), False
            except Exception:
                traceback.print_exc()
                status = 500
                body = ApiError(500, "An unknown error occurred", type_="api_error").body(
                    request_id
                )
            finally:
                self._flush_events()
                self.store.request_id = None
            if key is not None:
                self._saved[key] = SavedResponse(method, path, fp, status, body, time.time())
            return status, body, False

    def stream_session_error(self, token: str) -> ApiError | None:
        """Why ``token`` may not post to the meter event stream (unknown or expired), or None."""
        with self.lock:
            return meter_stream.session_error(self.store, token)

    def tick(self) -> None:
        """Run effects due on the account clock (at most once per clock second)."""
        with self.lock:
            now = self.store.wall_now()
            if now != self._last_tick:
                self._last_tick = now
                run_due(self.store, None, now)
                self._flush_events()

    def _flush_events(self) -> None:
        if self.store.outbox:
            events, self.store.outbox = self.store.outbox, []
            self.dispatcher.enqueue_events(self.store, events)
        if self.store.thin_outbox:
            thin, self.store.thin_outbox = self.store.thin_outbox, []
            self.dispatcher.enqueue_thin_events(self.store, thin)

    # ----- control ------------------------------------------------------------------------------
    def configure(self, **changes: Any) -> None:
        with self.lock:
            self.config.update(**changes)
            if "frozen_time" in changes:
                self.store.frozen_time = self.config.frozen_time
                self._last_tick = None
                self.tick()

    def reset(self, stats_only: bool = False) -> None:
        with self.lock:
            self.traffic.reset()
            self.store.meter_event_stream_counts.clear()
            self.store.meter_event_stream_errors.clear()
            if not stats_only:
                self.store = Store(frozen_time=self.config.frozen_time, config=self.config)
                self._saved.clear()
                self._last_tick = None

    def stats(self) -> dict[str, Any]:
        snapshot = self.traffic.snapshot()
        history = list(self.dispatcher.history)
        snapshot["webhooks_delivered_total"] = sum(d.delivered for d in history)
        snapshot["webhooks_failed_total"] = sum(not d.delivered for d in history)
        with self.lock:
            snapshot["meter_events_total"] = self.store.meter_event_seq
            snapshot.update(meter_stream.stream_stats(self.store))
            snapshot["objects"] = {k: len(v) for k, v in self.store.objects.items()}
        return snapshot

    # ----- helpers for tests and the demo (no HTTP) ---------------------------------------------
    def get(self, object_id: str, expand: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """The rendered object with this id, or None."""
        with self.lock:
            obj = self.store.find(object_id)
            return None if obj is None else self.store.render(obj, expand)

    def meter_total(self, customer_id: str, event_name: str, start: int, end: int) -> Decimal:
        """Aggregated value of the meter for ``event_name`` over ``[start, end)``."""
        with self.lock:
            meter = metering.meter_for_event(self.store, event_name)
            if meter is None:
                raise KeyError(f"no meter for event_name {event_name!r}")
            return metering.meter_total(self.store, customer_id, meter["id"], start, end)

    def subscription_quantity(self, subscription_id: str, item_id: str) -> int | None:
        with self.lock:
            item = self.store.get("subscription_item", item_id)
            if item["subscription"] != subscription_id:
                raise KeyError(f"{item_id} is not an item of {subscription_id}")
            return item["quantity"]

    def set_subscription_quantity(self, item_id: str, quantity: int) -> None:
        """Drift injection: change a quantity in place, with no proration and no event."""
        with self.lock:
            self.store.get("subscription_item", item_id)["quantity"] = quantity

    def set_price_amount(self, price_id: str, unit_amount_decimal: Decimal) -> None:
        """Drift injection: change a per-unit price's amount in place."""
        with self.lock:
            price = self.store.get("price", price_id)
            price["unit_amount_decimal"] = decimal_str(unit_amount_decimal)
            integral = unit_amount_decimal == unit_amount_decimal.to_integral_value()
            price["unit_amount"] = int(unit_amount_decimal) if integral else None

    def add_invoice_item(
        self,
        customer_id: str,
        amount: int,
        description: str = "Manual adjustment",
        subscription_id: str | None = None,
    ) -> str:
        """Drift injection: a pending invoice item added "by hand" (no event, no HTTP)."""
        with self.lock:
            self.store.get("customer", customer_id)
            now = self.store.customer_now(customer_id)
            item = invoicing.new_invoice_item(
                self.store,
                customer_id=customer_id,
                amount=amount,
                currency="usd",
                description=description,
                period=(now, now),
                subscription_id=subscription_id,
            )
            return str(item["id"])

    def advance_clock(self, clock_id: str, frozen_time: int) -> None:
        with self.lock:
            clock = self.store.get("test_helpers.test_clock", clock_id)
            run_due(self.store, clock_id, frozen_time)
            clock["frozen_time"] = max(clock["frozen_time"], frozen_time)
            self._flush_events()

    def due_at(self, clock_id: str) -> list[int]:
        """When the next renewals and finalizations on the test clock are due (unix seconds):
        a driver of simulated time stops there, as a person watching the Dashboard would."""
        with self.lock:
            return due_at(self.store, clock_id)

    def invoices(self, customer_id: str | None = None) -> list[dict[str, Any]]:
        """All invoices (oldest first), rendered with their lines."""
        with self.lock:
            return [
                self.store.render(i, ())
                for i in self.store.table("invoice").values()
                if customer_id in (None, i["customer"]) and not i.get("deleted")
            ]

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.store.table("event").values() if type_ in (None, e["type"])]

    def webhook_deliveries(self) -> list[webhooks.Delivery]:
        return list(self.dispatcher.history)

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        return self.dispatcher.wait_idle(timeout)

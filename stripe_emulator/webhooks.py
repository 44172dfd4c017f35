"""Webhook endpoints, the events list, and signed delivery of events from a background thread.

Each event is POSTed as JSON to every enabled endpoint whose ``enabled_events`` contains its
type (or ``*``), signed ``Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>``
with the real wall-clock time (test-clock time would fail ``construct_event``'s tolerance).
Deliveries run in event order on one thread; a non-2xx answer or a connection error is retried
with exponential backoff up to ``EmulatorConfig.webhook_attempts`` times. Thin (v2) events go to
event destinations the same way (``enqueue_thin_events``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from stripe_emulator.config import EmulatorConfig
from stripe_emulator.errors import invalid
from stripe_emulator.event_destinations import notification, thin_targets
from stripe_emulator.forms import Params, get_bool, get_list, get_str, merge_metadata, req_str
from stripe_emulator.routing import route
from stripe_emulator.store import API_VERSION, Store, created_filter, new_id


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@route("POST", "/v1/webhook_endpoints")
def create_endpoint(store: Store, params: Params) -> dict[str, Any]:
    url = req_str(params, "url")
    events = [str(e) for e in get_list(params, "enabled_events")]
    if not events:
        raise invalid(
            "Missing required param: enabled_events.", "enabled_events", "parameter_missing"
        )
    endpoint = {
        "id": new_id("we"),
        "object": "webhook_endpoint",
        "api_version": get_str(params, "api_version") or API_VERSION,
        "application": None,
        "created": store.wall_now(),
        "description": get_str(params, "description"),
        "enabled_events": events,
        "livemode": False,
        "metadata": merge_metadata({}, params),
        "status": "enabled",
        "url": url,
        "_secret": f"whsec_{secrets.token_hex(16)}",
    }
    store.add(endpoint)
    out = store.render(endpoint, [])
    out["secret"] = endpoint["_secret"]
    return out


@route("GET", "/v1/webhook_endpoints/{id}")
def retrieve_endpoint(store: Store, _params: Params, endpoint_id: str) -> dict[str, Any]:
    return store.render(store.get("webhook_endpoint", endpoint_id), [])


@route("POST", "/v1/webhook_endpoints/{id}")
def update_endpoint(store: Store, params: Params, endpoint_id: str) -> dict[str, Any]:
    endpoint = store.get("webhook_endpoint", endpoint_id)
    if "url" in params:
        endpoint["url"] = req_str(params, "url")
    if "enabled_events" in params:
        endpoint["enabled_events"] = [str(e) for e in get_list(params, "enabled_events")]
    if "disabled" in params:
        endpoint["status"] = "disabled" if get_bool(params, "disabled") else "enabled"
    endpoint["metadata"] = merge_metadata(endpoint["metadata"], params)
    return store.render(endpoint, [])


@route("DELETE", "/v1/webhook_endpoints/{id}")
def delete_endpoint(store: Store, _params: Params, endpoint_id: str) -> dict[str, Any]:
    endpoint = store.get("webhook_endpoint", endpoint_id)
    endpoint["deleted"] = True
    return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}


@route("GET", "/v1/webhook_endpoints")
def list_endpoints(store: Store, params: Params) -> dict[str, Any]:
    items = [e for e in store.table("webhook_endpoint").values() if not e.get("deleted")]
    return store.list_response("/v1/webhook_endpoints", items, params)


@route("GET", "/v1/events/{id}")
def retrieve_event(store: Store, _params: Params, event_id: str) -> dict[str, Any]:
    return store.render(store.get("event", event_id), [])


@route("GET", "/v1/events")
def list_events(store: Store, params: Params) -> dict[str, Any]:
    type_ = get_str(params, "type")
    types = get_list(params, "types")
    created = created_filter(params)
    items = [
        e
        for e in store.table("event").values()
        if (
            type_ is None
            or e["type"] == type_
            or (type_.endswith("*") and e["type"].startswith(type_[:-1]))
        )
        and (not types or e["type"] in types)
        and created(e["created"])
    ]
    return store.list_response("/v1/events", items, params)


@dataclass
class Delivery:
    """One event to one endpoint, with its outcome once attempted."""

    event_id: str
    event_type: str
    url: str
    secret: str
    payload: bytes
    attempts: int = 0
    status: int | None = None
    delivered: bool = False
    errors: list[str] = field(default_factory=list)


class Dispatcher:
    """Delivers queued events in order from one daemon thread."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.queue: queue.Queue[Delivery | None] = queue.Queue()
        self.history: list[Delivery] = []
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._pending = 0
        self._stopping = threading.Event()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="stripe-emulator-webhooks", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stopping.set()
            self.queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def enqueue_events(self, store: Store, events: list[dict[str, Any]]) -> None:
        endpoints = [
            e
            for e in store.table("webhook_endpoint").values()
            if not e.get("deleted") and e["status"] == "enabled"
        ]
        for event in events:
            targets = [
                e
                for e in endpoints
                if "*" in e["enabled_events"] or event["type"] in e["enabled_events"]
            ]
            event["pending_webhooks"] = len(targets)
            payload = json.dumps(event, indent=2).encode()
            for endpoint in targets:
                with self._idle:
                    self._pending += 1
                self.queue.put(
                    Delivery(
                        event["id"], event["type"], endpoint["url"], endpoint["_secret"], payload
                    )
                )

    def enqueue_thin_events(self, store: Store, events: list[dict[str, Any]]) -> None:
        """Thin (v2) notifications to every thin event destination that takes their type
        (``stripe_emulator.event_destinations``), signed and retried like webhook events."""
        for event in events:
            payload = json.dumps(notification(event), indent=2).encode()
            for url, secret in thin_targets(store, event["type"]):
                with self._idle:
                    self._pending += 1
                self.queue.put(Delivery(event["id"], event["type"], url, secret, payload))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued delivery has been attempted to completion."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def _run(self) -> None:
        while True:
            delivery = self.queue.get()
            if delivery is None:
                return
            self._deliver(delivery)
            self.history.append(delivery)
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def _deliver(self, delivery: Delivery) -> None:
        for attempt in range(max(1, self.config.webhook_attempts)):
            delivery.attempts = attempt + 1
            header = sign(delivery.payload, delivery.secret, int(time.time()))
            request = urllib.request.Request(  # noqa: S310 - endpoints are http(s) URLs by contract
                delivery.url,
                data=delivery.payload,
                method="POST",
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": header,
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                },
            )
            try:
                with urllib.request.urlopen(  # noqa: S310 - http(s) endpoint URLs only
                    request, timeout=self.config.webhook_timeout_seconds
                ) as resp:
                    delivery.status = resp.status
                    if 200 <= resp.status < 300:
                        delivery.delivered = True
                        return
            except urllib.error.HTTPError as exc:
                delivery.status = exc.code
                delivery.errors.append(f"HTTP {exc.code}")
            except OSError as exc:
                delivery.errors.append(repr(exc))
            if self._stopping.wait(self.config.webhook_retry_base_seconds * 2**attempt):
                return

"""The simulated world: a fresh emulator and database, the real web process, sharded test clocks.

What is built here is what a deployment has — the catalog synced from the price books, the web
process (`worker.web.app`) serving the Stripe webhook endpoint with a real signing secret — plus
the one thing simulation adds: Stripe test clocks. Stripe documents that a test clock holds only
a few customers (https://docs.stripe.com/billing/testing/test-clocks, "Limitations"), so orgs are
sharded over clocks, `CUSTOMERS_PER_CLOCK` each, all advanced together.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import SecretStr

from billing.pricing.book import load_book
from billing.stripe_gateway.admin import create_webhook_endpoint
from billing.stripe_gateway.clocks import StripeTestClock, TestClocks
from models.db import migrate
from stripe_emulator import EmulatorConfig, EmulatorServer
from worker import composition
from worker.settings import Settings, get_settings
from worker.web.app import create_app

CUSTOMERS_PER_CLOCK = 3
WEBHOOK_PATH = "/stripe/webhook"
WEBHOOK_EVENTS = (
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.voided",
    "invoice.deleted",
    "customer.subscription.updated",
    "customer.subscription.deleted",
)
# The web process answers the emulator's deliveries itself (inline handling runs a usage push
# and a reconciliation, a few Stripe calls): allow it more than the emulator's default 5 s.
WEBHOOK_TIMEOUT_SECONDS = 60.0


@dataclass
class Clocks:
    """The simulation's test clocks: orgs assigned in order of provisioning, a few per clock."""

    api: TestClocks
    start_at: datetime
    clocks: list[StripeTestClock] = field(default_factory=list)
    org_clock: dict[str, str] = field(default_factory=dict)
    now: datetime | None = None
    advances: int = 0

    def clock_for(self, org_id: str) -> str:
        """The test clock the org's customer is created on (a new clock when the last is full)."""
        if org_id in self.org_clock:
            return self.org_clock[org_id]
        if not self.clocks or self._members(self.clocks[-1]) >= CUSTOMERS_PER_CLOCK:
            at = self.now or self.start_at
            clock = self.api.create(
                at,
                name=f"simulation {len(self.clocks) + 1}",
                idempotency_key=f"simulate:clock:{len(self.clocks) + 1}:{at.isoformat()}",
            )
            self.clocks.append(clock)
        clock_id = self.clocks[-1].stripe_test_clock_id
        self.org_clock[org_id] = clock_id
        return clock_id

    def _members(self, clock: StripeTestClock) -> int:
        return sum(1 for c in self.org_clock.values() if c == clock.stripe_test_clock_id)

    def advance(self, to_at: datetime) -> None:
        """Every clock to `to_at` (Stripe runs each effect due on the way, in time order)."""
        for index, clock in enumerate(self.clocks):
            if clock.frozen_at >= to_at:
                continue
            self.advances += 1
            self.clocks[index] = self.api.advance(
                clock.stripe_test_clock_id,
                to_at,
                idempotency_key=f"simulate:advance:{clock.stripe_test_clock_id}:{to_at.isoformat()}",
            )
        self.now = to_at


@dataclass
class World:
    emulator: EmulatorServer
    settings: Settings
    web_url: str
    clocks: Clocks

    def wait_for_webhooks(self) -> None:
        """Until every event Stripe emitted so far was delivered to (and answered by) the web."""
        if not self.emulator.state.wait_for_webhooks(timeout=600):
            raise RuntimeError("the emulator's webhook deliveries did not finish within 10 minutes")


@contextmanager
def build_world(
    *,
    start_at: datetime,
    workdir: Path,
    books: list[str],
    database_url: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> Iterator[World]:
    """A fresh world; `overrides` are settings for the worker (e.g. a Redis for Celery)."""
    with ExitStack() as stack:
        emulator = stack.enter_context(
            EmulatorServer(EmulatorConfig(webhook_timeout_seconds=WEBHOOK_TIMEOUT_SECONDS))
        )
        db_url = database_url or f"sqlite:///{workdir / 'billing-simulation.db'}"
        migrate(db_url)
        port = _free_port()
        web_url = f"http://127.0.0.1:{port}"
        base = get_settings().model_copy(
            update={
                "database_url": db_url,
                "stripe_api_base": emulator.url,
                "stripe_meter_events_base": None,
                "stripe_api_key": None,
                "stripe_budget": "none",
                "web_inline_tasks": True,
                "org_locks": "local",
                **(overrides or {}),
            }
        )
        gateway = composition.stripe_gateway(base)
        hook_url = f"{web_url}{WEBHOOK_PATH}"
        endpoint = create_webhook_endpoint(
            gateway, hook_url, WEBHOOK_EVENTS, idempotency_key=f"simulate:webhook:{hook_url}"
        )
        secret = SecretStr(endpoint.secret)  # the web process verifies signatures with it
        settings = base.model_copy(update={"stripe_webhook_secret": secret})
        for name in books:
            composition.catalog_sync(settings).sync(load_book(name), start_at)
        stack.enter_context(_serving(create_app(settings), port))
        clocks = Clocks(TestClocks(gateway, poll_seconds=0.01), start_at)
        yield World(emulator, settings, web_url, clocks)


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _serving(app: Any, port: int) -> Iterator[None]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="simulate-web", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the web process of the simulation did not start")
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)

"""An in-process billing world for end-to-end tests: database, emulator, gateway and services.

Time is a Stripe test clock: customers are created on it and every service is given its
frozen time as `now`, exactly as the offline demo does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from billing.book_cache import BookCache
from billing.catalog import CatalogSync
from billing.ingest import Ingestor
from billing.meters import Interval
from billing.pricebook import load_book
from billing.provisioning import OrgToProvision, Provisioner
from billing.seat_sync import SeatSync, SeatSyncOutcome
from billing.stripe_gateway import StripeConfig, StripeGateway
from billing.stripe_gateway.clocks import TestClocks
from billing.usage_push import UsagePusher, UsagePushOutcome
from models.db import make_engine, migrate
from stripe_emulator import EmulatorConfig, EmulatorServer


class World:
    """One emulator, one database, one test clock; helpers to run a month of billing."""

    def __init__(self, emulator: EmulatorServer, engine: Engine, start_at: datetime) -> None:
        self.emulator = emulator
        self.engine = engine
        self.gateway = StripeGateway(
            StripeConfig(api_key="sk_test_world", api_base=emulator.url, max_network_retries=2)
        )
        self.books = BookCache()
        self.clocks = TestClocks(self.gateway, poll_seconds=0.01)
        self.clock = self.clocks.create(start_at, name="e2e", idempotency_key=f"clock:{start_at}")
        self.now = start_at
        self.seats = SeatSync(engine, self.gateway, self.books)
        self.usage = UsagePusher(engine, self.gateway, self.books)
        self._advances = 0

    def sync_catalog(self, *books: str) -> None:
        for name in books:
            report = CatalogSync(self.gateway, self.engine).sync(load_book(name), self.now)
            assert not report.has_drift, report

    def ingest(self, events: Iterable[Mapping[str, Any]]) -> None:
        with Session(self.engine) as session:
            outcome = Ingestor(session, books=self.books).ingest(
                [json.dumps(event) for event in events], self.now
            )
            assert outcome.ok, outcome.errors
            session.commit()

    def provision(self, org_id: str, book: str, plan: str, interval: str, seats: int) -> None:
        Provisioner(self.gateway, self.engine).provision(
            OrgToProvision(
                org_id,
                book,
                plan,
                Interval(interval),
                self.now,
                seats,
                stripe_test_clock_id=self.clock.stripe_test_clock_id,
            ),
            self.now,
        )

    def advance(self, to_at: datetime) -> None:
        self._advances += 1
        self.clock = self.clocks.advance(
            self.clock.stripe_test_clock_id,
            to_at,
            idempotency_key=f"advance:{self._advances}:{to_at}",
        )
        self.now = to_at

    def sync_seats(self, org_id: str) -> SeatSyncOutcome:
        return self.seats.sync(org_id, self.now)

    def push_usage(self, org_id: str) -> UsagePushOutcome:
        return self.usage.push_org(org_id, self.now)


@contextmanager
def world(
    database_url: str, start_at: datetime, config: EmulatorConfig | None = None
) -> Iterator[World]:
    migrate(database_url)
    engine = make_engine(database_url)
    try:
        with EmulatorServer(config or EmulatorConfig()) as emulator:
            yield World(emulator, engine, start_at)
    finally:
        engine.dispose()

"""The scheduled price drift check: Stripe's prices compared with the book, findings stored."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.engine import Engine

from billing.alerts.triggers import note_price_drift
from billing.pricing.book import PriceBook
from billing.setup.catalog import CatalogAction, CatalogGateway
from billing.setup.catalog_verify import verify_catalog
from models.db import unit_of_work
from models.reconciliation import PriceCheck

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PriceCheckOutcome:
    price_check_id: int
    book: str
    verified_count: int
    drift_count: int


class PriceDriftCheck:
    """Reads Stripe's prices (never writes to Stripe) and records what drifted from the book."""

    def __init__(self, engine: Engine, gateway: CatalogGateway) -> None:
        self.engine = engine
        self.gateway = gateway

    def check(self, book: PriceBook, now: datetime) -> PriceCheckOutcome:
        report = verify_catalog(self.gateway, book)
        findings = [
            {
                "catalog_key": r.catalog_key,
                "stripe_price_id": r.stripe_id or None,
                "note": r.note,
                "book_terms": r.book_terms,
                "stripe_terms": r.stripe_terms,
            }
            for r in report.results
            if r.action is CatalogAction.DRIFTED
        ]
        for finding in findings:
            log.warning("prices.drifted", book=book.name, **finding)
        with unit_of_work(self.engine) as session:
            row = PriceCheck(
                book=book.name,
                checked_at=now,
                verified_count=report.count(CatalogAction.VERIFIED),
                drift_count=len(findings),
                findings_json=json.dumps(findings, sort_keys=True),
            )
            session.add(row)
            session.flush()
            assert row.id is not None
            note_price_drift(session, book.name, findings, now)  # one alert per drifted price
            outcome = PriceCheckOutcome(row.id, book.name, row.verified_count, row.drift_count)
        log.info(
            "prices.checked",
            book=book.name,
            verified=outcome.verified_count,
            drifted=outcome.drift_count,
        )
        return outcome

"""Catalog sync: the Stripe products, meters and prices a price book implies, made to exist."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from billing.core.keys import catalog_idempotency_key
from billing.core.money import format_decimal
from billing.pricing.book import PriceBook
from billing.setup.catalog_plan import MeterPlan, PricePlan, ProductPlan, plan_catalog
from billing.stripe_gateway.records import (
    PriceSpec,
    PriceTerms,
    StripeMeter,
    StripePrice,
    StripeProduct,
)
from models.db import unit_of_work
from models.stripe_records import CatalogKind, StripeCatalogEntry

log = structlog.get_logger(__name__)

# Usage push reports each org's cumulative period-to-date total; Stripe bills "the final meter
# event received in a billing period" of a `last` meter, so a retried or corrected total
# replaces the earlier one and nothing can be counted twice (billing/usage/push.py).
METER_FORMULA: Literal["last"] = "last"
EVENT_TIME_WINDOW: Literal["day", "hour"] | None = None


class CatalogGateway(Protocol):
    """The part of the Stripe gateway catalog sync uses (a fake in service tests)."""

    def list_products(self) -> list[StripeProduct]: ...

    def create_product(
        self, *, name: str, metadata: Mapping[str, str], idempotency_key: str
    ) -> StripeProduct: ...

    def list_meters(self) -> list[StripeMeter]: ...

    def create_meter(
        self,
        *,
        display_name: str,
        event_name: str,
        formula: Literal["count", "last", "sum"],
        event_time_window: Literal["day", "hour"] | None,
        idempotency_key: str,
    ) -> StripeMeter: ...

    def list_prices(self, lookup_keys: Sequence[str]) -> list[StripePrice]: ...

    def create_price(self, spec: PriceSpec, *, idempotency_key: str) -> StripePrice: ...


class CatalogAction(StrEnum):
    CREATED = "created"
    VERIFIED = "verified"
    DRIFTED = "drifted"
    REPAIRED = "repaired"  # a drifted price replaced by a new version holding the lookup key


@dataclass(frozen=True)
class CatalogResult:
    catalog_key: str
    kind: CatalogKind
    action: CatalogAction
    stripe_id: str
    note: str = ""
    book_terms: str | None = None  # both sides of a drift, in words
    stripe_terms: str | None = None
    approximate: bool = False


@dataclass(frozen=True)
class CatalogSyncReport:
    book: str
    results: tuple[CatalogResult, ...] = field(default_factory=tuple)

    @property
    def has_drift(self) -> bool:
        return any(r.action is CatalogAction.DRIFTED for r in self.results)

    def count(self, action: CatalogAction) -> int:
        return sum(1 for r in self.results if r.action is action)


class CatalogSync:
    """Creates or verifies the book's Stripe catalog and records the ids locally."""

    def __init__(self, gateway: CatalogGateway, engine: Engine) -> None:
        self.gateway = gateway
        self.engine = engine

    def sync(self, book: PriceBook, now: datetime, *, repair: bool = False) -> CatalogSyncReport:
        plan = plan_catalog(book)
        results: list[CatalogResult] = []
        product_ids = self._sync_products(plan.products, now, results)
        meter_ids = self._sync_meters(plan.meters, now, results)
        self._sync_prices(
            plan.prices,
            product_ids=product_ids,
            meter_ids=meter_ids,
            now=now,
            repair=repair,
            results=results,
        )
        report = CatalogSyncReport(book.name, tuple(results))
        log.info(
            "catalog.synced",
            book=book.name,
            created=report.count(CatalogAction.CREATED),
            verified=report.count(CatalogAction.VERIFIED),
            drifted=report.count(CatalogAction.DRIFTED),
            repaired=report.count(CatalogAction.REPAIRED),
        )
        return report

    # ------------------------------------------------------------------ products

    def _sync_products(
        self, wanted: Iterable[ProductPlan], now: datetime, results: list[CatalogResult]
    ) -> dict[str, str]:
        existing: dict[str, StripeProduct] = {}
        for product in self.gateway.list_products():
            key = product.metadata.get("catalog_key")
            if key and (key not in existing or product.active):
                existing[key] = product
        ids: dict[str, str] = {}
        for item in wanted:
            found = existing.get(item.catalog_key)
            if found is None:
                found = self.gateway.create_product(
                    name=item.name,
                    metadata=item.metadata,
                    idempotency_key=catalog_idempotency_key(item.catalog_key),
                )
                action = CatalogAction.CREATED
            else:
                action = CatalogAction.VERIFIED
            ids[item.catalog_key] = found.stripe_product_id
            self._record(
                item.catalog_key,
                CatalogKind.PRODUCT,
                book=item.book,
                plan=item.plan,
                meter=item.meter,
                now=now,
                stripe_product_id=found.stripe_product_id,
            )
            results.append(
                CatalogResult(
                    item.catalog_key, CatalogKind.PRODUCT, action, found.stripe_product_id
                )
            )
        return ids

    # ------------------------------------------------------------------ meters

    def _sync_meters(
        self, wanted: Iterable[MeterPlan], now: datetime, results: list[CatalogResult]
    ) -> dict[str, str]:
        existing = {m.event_name: m for m in self.gateway.list_meters()}
        ids: dict[str, str] = {}
        for item in wanted:
            found = existing.get(item.event_name)
            note, book_terms, stripe_terms = "", None, None
            if found is None:
                found = self.gateway.create_meter(
                    display_name=item.display_name,
                    event_name=item.event_name,
                    formula=METER_FORMULA,
                    event_time_window=EVENT_TIME_WINDOW,
                    idempotency_key=catalog_idempotency_key(item.catalog_key),
                )
                action = CatalogAction.CREATED
            else:
                expected = _meter_shape(
                    METER_FORMULA, EVENT_TIME_WINDOW, "stripe_customer_id", "value"
                )
                actual = _meter_shape(
                    found.formula,
                    found.event_time_window,
                    found.customer_payload_key,
                    found.value_payload_key,
                )
                if actual != expected or found.status not in (None, "active"):
                    action = CatalogAction.DRIFTED
                    note = "meters are immutable: create a new meter and event name by hand"
                    book_terms, stripe_terms = expected, f"{actual} status={found.status}"
                else:
                    action = CatalogAction.VERIFIED
            ids[item.catalog_key] = found.stripe_meter_id
            self._record(
                item.catalog_key,
                CatalogKind.METER,
                book=item.book,
                meter=item.meter,
                now=now,
                stripe_meter_id=found.stripe_meter_id,
            )
            results.append(
                CatalogResult(
                    item.catalog_key,
                    CatalogKind.METER,
                    action,
                    found.stripe_meter_id,
                    note,
                    book_terms,
                    stripe_terms,
                )
            )
        return ids

    # ------------------------------------------------------------------ prices

    def _sync_prices(
        self,
        wanted: Sequence[PricePlan],
        *,
        product_ids: Mapping[str, str],
        meter_ids: Mapping[str, str],
        now: datetime,
        repair: bool,
        results: list[CatalogResult],
    ) -> None:
        existing = {
            p.lookup_key: p
            for p in self.gateway.list_prices([item.lookup_key for item in wanted])
            if p.lookup_key
        }
        for item in wanted:
            stripe_meter_id = meter_ids[item.meter_key] if item.meter_key else None
            result = self._sync_price(
                item,
                existing.get(item.lookup_key),
                product_ids=product_ids,
                stripe_meter_id=stripe_meter_id,
                now=now,
                repair=repair,
            )
            results.append(result)

    def _sync_price(
        self,
        item: PricePlan,
        found: StripePrice | None,
        *,
        product_ids: Mapping[str, str],
        stripe_meter_id: str | None,
        now: datetime,
        repair: bool,
    ) -> CatalogResult:
        """Create a missing price, verify an existing one, or (with `repair`) replace a
        drifted one by a new version that takes over its lookup key; record it locally."""
        desired = item.terms(stripe_meter_id)
        if found is not None and found.terms != desired and not repair:
            return _drifted(item, found, desired)
        local_version = self._local_version(item.catalog_key)
        note = "approximate: book price rounded to 12 decimal places" if item.approximate else ""
        book_terms = stripe_terms = None
        if found is None:
            version, action = local_version, CatalogAction.CREATED
            price = self._create_price(item, product_ids, desired, version, transfer=False)
        elif found.terms == desired:
            version, action = max(local_version, _version_of(found)), CatalogAction.VERIFIED
            price = found
        else:
            version, action = max(local_version, _version_of(found)) + 1, CatalogAction.REPAIRED
            price = self._create_price(item, product_ids, desired, version, transfer=True)
            note = f"v{version} replaces {found.stripe_price_id}, lookup key moved; {note}"
            note = note.strip("; ")
            book_terms, stripe_terms = desired.describe(), found.terms.describe()
        self._record(
            item.catalog_key,
            CatalogKind.PRICE,
            book=item.book,
            plan=item.plan,
            interval=item.interval.value,
            meter=item.meter,
            contract_org_id=item.contract_org_id,
            now=now,
            version=version,
            lookup_key=item.lookup_key,
            stripe_product_id=product_ids[item.product_key],
            stripe_meter_id=stripe_meter_id,
            stripe_price_id=price.stripe_price_id,
            terms_json=_terms_json(desired),
            approximate=item.approximate,
        )
        return CatalogResult(
            item.catalog_key,
            CatalogKind.PRICE,
            action,
            price.stripe_price_id,
            note,
            book_terms,
            stripe_terms,
            item.approximate,
        )

    def _create_price(
        self,
        item: PricePlan,
        product_ids: Mapping[str, str],
        desired: PriceTerms,
        version: int,
        *,
        transfer: bool,
    ) -> StripePrice:
        spec = PriceSpec(
            stripe_product_id=product_ids[item.product_key],
            terms=desired,
            lookup_key=item.lookup_key,
            nickname=item.nickname,
            metadata=item.metadata(version),
            transfer_lookup_key=transfer,
        )
        return self.gateway.create_price(
            spec, idempotency_key=catalog_idempotency_key(item.catalog_key, version)
        )

    # ------------------------------------------------------------------ local records

    def _local_version(self, catalog_key: str) -> int:
        with Session(self.engine) as session:
            row = session.exec(
                select(StripeCatalogEntry).where(StripeCatalogEntry.catalog_key == catalog_key)
            ).first()
            return row.version if row else 1

    def _record(
        self,
        catalog_key: str,
        kind: CatalogKind,
        *,
        book: str,
        now: datetime,
        plan: str | None = None,
        interval: str | None = None,
        meter: str | None = None,
        contract_org_id: str | None = None,
        version: int = 1,
        lookup_key: str | None = None,
        stripe_product_id: str | None = None,
        stripe_meter_id: str | None = None,
        stripe_price_id: str | None = None,
        terms_json: str | None = None,
        approximate: bool = False,
    ) -> None:
        with unit_of_work(self.engine) as session:
            row = session.exec(
                select(StripeCatalogEntry).where(StripeCatalogEntry.catalog_key == catalog_key)
            ).first()
            if row is None:
                row = StripeCatalogEntry(
                    catalog_key=catalog_key, kind=kind.value, book=book, synced_at=now
                )
            row.plan = plan
            row.interval = interval
            row.meter = meter
            row.contract_org_id = contract_org_id
            row.version = version
            row.lookup_key = lookup_key
            row.stripe_product_id = stripe_product_id
            row.stripe_meter_id = stripe_meter_id
            row.stripe_price_id = stripe_price_id
            row.terms_json = terms_json
            row.approximate = approximate
            row.synced_at = now
            session.add(row)


def catalog_entries(engine: Engine, keys: Iterable[str]) -> dict[str, StripeCatalogEntry]:
    """Local catalog rows by catalog key (only those that exist)."""
    wanted = list(keys)
    with Session(engine, expire_on_commit=False) as session:
        rows = session.exec(
            select(StripeCatalogEntry).where(StripeCatalogEntry.catalog_key.in_(wanted))  # type: ignore[attr-defined]
        ).all()
        return {row.catalog_key: row for row in rows}


def _drifted(item: PricePlan, found: StripePrice, desired: PriceTerms) -> CatalogResult:
    """A price whose Stripe terms differ from the book's, left as it is (no --repair)."""
    log.warning(
        "catalog.price_drifted",
        catalog_key=item.catalog_key,
        stripe_price_id=found.stripe_price_id,
        book_terms=desired.describe(),
        stripe_terms=found.terms.describe(),
    )
    return CatalogResult(
        item.catalog_key,
        CatalogKind.PRICE,
        CatalogAction.DRIFTED,
        found.stripe_price_id,
        "Stripe prices are immutable: run with --repair to create a new version",
        desired.describe(),
        found.terms.describe(),
        item.approximate,
    )


def _meter_shape(
    formula: str | None, window: str | None, customer_key: str | None, value_key: str | None
) -> str:
    return f"formula={formula} window={window} customer_key={customer_key} value_key={value_key}"


def _version_of(price: StripePrice) -> int:
    raw = price.metadata.get("catalog_version", "1")
    return int(raw) if raw.isdigit() else 1


def _terms_json(terms: PriceTerms) -> str:
    return json.dumps(
        {
            "currency": terms.currency,
            "interval": terms.interval,
            "usage_type": terms.usage_type,
            "stripe_meter_id": terms.stripe_meter_id,
            "unit_amount_decimal": None
            if terms.unit_amount_decimal is None
            else format_decimal(terms.unit_amount_decimal),
            "tiers": [
                {
                    "up_to": "inf" if t.up_to is None else t.up_to,
                    "unit_amount_decimal": format_decimal(t.unit_amount_decimal),
                    "flat_amount": t.flat_amount,
                }
                for t in terms.tiers
            ],
        },
        sort_keys=True,
    )

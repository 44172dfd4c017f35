"""Catalog sync: the Stripe products, meters and prices a price book implies, made to exist."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Context, Decimal
from enum import StrEnum
from typing import Literal, Protocol

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from billing.core.meters import Interval, Meter
from billing.core.money import MAX_DECIMAL_PLACES, format_decimal
from billing.pricing.book import MeterPrice, PriceBook, Terms
from billing.stripe_gateway.records import (
    PriceSpec,
    PriceTerms,
    PriceTier,
    StripeMeter,
    StripePrice,
    StripeProduct,
)
from models.db import unit_of_work
from models.stripe_records import CatalogKind, StripeCatalogEntry

log = structlog.get_logger(__name__)

SEATS = "seats"
# Usage push reports each org's cumulative period-to-date total; Stripe bills "the final meter
# event received in a billing period" of a `last` meter, so a retried or corrected total
# replaces the earlier one and nothing can be counted twice (billing/usage/push.py).
METER_FORMULA: Literal["last"] = "last"
EVENT_TIME_WINDOW: Literal["day", "hour"] | None = None
_CONTEXT = Context(prec=60, rounding=ROUND_HALF_UP)
_QUANTUM = Decimal(1).scaleb(-MAX_DECIMAL_PLACES)


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


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class UnitPrice:
    """A book unit price converted to Stripe's per-base-unit price (≤ 12 decimal places)."""

    stripe_amount_decimal: Decimal
    approximate: bool


def stripe_unit_price(unit_amount_decimal: Decimal, per: int) -> UnitPrice:
    """`unit / per`, rounded half up to 12 places when not exact (13¢ per 3,600 s, say)."""
    exact = _CONTEXT.divide(unit_amount_decimal, Decimal(per))
    rounded = exact.quantize(_QUANTUM, rounding=ROUND_HALF_UP, context=_CONTEXT)
    return UnitPrice(Decimal(format_decimal(rounded)), rounded != exact)


@dataclass(frozen=True)
class ProductPlan:
    catalog_key: str
    book: str
    name: str
    plan: str | None = None
    meter: Meter | None = None

    @property
    def metadata(self) -> dict[str, str]:
        data = {"catalog_key": self.catalog_key, "book": self.book}
        if self.plan:
            data["plan"] = self.plan
            data["component"] = SEATS
        if self.meter:
            data["meter"] = self.meter.value
        return data


@dataclass(frozen=True)
class MeterPlan:
    catalog_key: str
    book: str
    meter: Meter
    event_name: str
    display_name: str


@dataclass(frozen=True)
class PricePlan:
    """A price the book implies; `terms` still names the meter by catalog key, not Stripe id."""

    catalog_key: str
    book: str
    plan: str
    interval: Interval
    product_key: str
    nickname: str
    currency: str
    usage_type: str
    unit_amount_decimal: Decimal | None
    tiers: tuple[PriceTier, ...]
    meter: Meter | None = None
    contract_org_id: str | None = None
    approximate: bool = False

    @property
    def lookup_key(self) -> str:
        """Stable per catalog object; a repaired price takes it over (`transfer_lookup_key`)."""
        return self.catalog_key.removeprefix("price:")

    @property
    def meter_key(self) -> str | None:
        return None if self.meter is None else meter_key(self.book, self.meter)

    def terms(self, stripe_meter_id: str | None) -> PriceTerms:
        return PriceTerms(
            currency=self.currency,
            interval=self.interval.value,
            usage_type=self.usage_type,
            stripe_meter_id=stripe_meter_id,
            unit_amount_decimal=self.unit_amount_decimal,
            tiers=self.tiers,
        )

    def metadata(self, version: int) -> dict[str, str]:
        data = {
            "catalog_key": self.catalog_key,
            "catalog_version": str(version),
            "book": self.book,
            "plan": self.plan,
            "interval": self.interval.value,
        }
        if self.meter:
            data["meter"] = self.meter.value
        if self.contract_org_id:
            data["contract"] = self.contract_org_id
        return data


@dataclass(frozen=True)
class CatalogPlan:
    book: str
    products: tuple[ProductPlan, ...]
    meters: tuple[MeterPlan, ...]
    prices: tuple[PricePlan, ...]


def seat_product_key(book: str, plan: str) -> str:
    return f"product:{book}:{plan}:{SEATS}"


def meter_product_key(book: str, meter: Meter) -> str:
    return f"product:{book}:meter:{meter.value}"


def meter_key(book: str, meter: Meter) -> str:
    return f"meter:{book}:{meter.value}"


def seat_price_key(book: str, plan: str, interval: Interval, contract_org_id: str | None) -> str:
    key = f"price:{book}:{plan}:{SEATS}:{interval.value}"
    return f"{key}:contract:{contract_org_id}" if contract_org_id else key


def meter_price_key(book: str, plan: str, meter: Meter, contract_org_id: str | None) -> str:
    key = f"price:{book}:{plan}:{meter.value}"
    return f"{key}:contract:{contract_org_id}" if contract_org_id else key


def event_name(book: str, meter: Meter) -> str:
    return f"{book}.{meter.value}"


def price_keys_for_terms(book: PriceBook, terms: Terms) -> dict[str, str]:
    """The catalog key of each component (`seats`, meter codes) an org on `terms` subscribes to.

    A contract uses its own price only where its terms differ from the plan's.
    """
    plan_terms = _plan_terms(book, terms.plan, terms.interval)
    org = terms.contract_org
    keys: dict[str, str] = {}
    if terms.seat_unit_amount is not None:
        own = org is not None and (
            plan_terms is None or plan_terms.seat_unit_amount != terms.seat_unit_amount
        )
        keys[SEATS] = seat_price_key(book.name, terms.plan, terms.interval, org if own else None)
    for meter, price in terms.meters.items():
        base = plan_terms.meters.get(meter) if plan_terms else None
        own = org is not None and base != price
        keys[meter.value] = meter_price_key(book.name, terms.plan, meter, org if own else None)
    return keys


def _plan_terms(book: PriceBook, plan: str, interval: Interval) -> Terms | None:
    if interval not in book.plan_intervals(plan):
        return None
    return book.terms(plan, interval)


def plan_catalog(book: PriceBook) -> CatalogPlan:
    """Every product, meter and price the book implies, in creation order (pure)."""
    products: dict[str, ProductPlan] = {}
    meters: dict[str, MeterPlan] = {}
    prices: dict[str, PricePlan] = {}
    for meter, definition in book.meter_definitions.items():
        key = meter_product_key(book.name, meter)
        products[key] = ProductPlan(key, book.name, definition.display_name, meter=meter)
        mkey = meter_key(book.name, meter)
        meters[mkey] = MeterPlan(
            mkey, book.name, meter, event_name(book.name, meter), definition.display_name
        )
    everyone: list[Terms] = [
        book.terms(plan, interval) for plan in book.plans for interval in book.plan_intervals(plan)
    ]
    for org_id, contract in book.contracts.items():
        everyone.append(book.terms(str(contract["plan"]), contract.get("interval"), org_id))
    for terms in everyone:
        keys = price_keys_for_terms(book, terms)
        label = book.plan_display_name(terms.plan)
        org = terms.contract_org
        suffix = f" ({org})" if org else ""
        if SEATS in keys and keys[SEATS] not in prices:
            pkey = seat_product_key(book.name, terms.plan)
            products.setdefault(pkey, ProductPlan(pkey, book.name, f"{label} seats", terms.plan))
            assert terms.seat_unit_amount is not None
            prices[keys[SEATS]] = PricePlan(
                catalog_key=keys[SEATS],
                book=book.name,
                plan=terms.plan,
                interval=terms.interval,
                product_key=pkey,
                nickname=f"{label} seats per {terms.interval.value}{suffix}",
                currency=book.currency,
                usage_type="licensed",
                unit_amount_decimal=Decimal(terms.seat_unit_amount),
                tiers=(),
                contract_org_id=org if keys[SEATS].endswith(f":contract:{org}") else None,
            )
        for meter, meter_price in terms.meters.items():
            key = keys[meter.value]
            if key in prices:
                continue
            prices[key] = _metered_price_plan(
                book, terms, meter_price, key, f"{label} · {meter.value}{suffix}"
            )
    return CatalogPlan(
        book.name, tuple(products.values()), tuple(meters.values()), tuple(prices.values())
    )


def _metered_price_plan(
    book: PriceBook, terms: Terms, meter_price: MeterPrice, key: str, nickname: str
) -> PricePlan:
    # The meter receives quantities in the price's unit (billing.pricing.meter_value: hours
    # for 13¢ per 3,600 s), so the book's unit amount is Stripe's, exactly; tier bounds are
    # converted to that unit too (approximate only if a bound is not a whole number of them).
    tiers: list[PriceTier] = []
    approximate = False
    per = meter_price.per
    for tier in meter_price.tiers:
        up_to = None if tier.up_to is None else tier.up_to // per
        approximate = approximate or (tier.up_to is not None and tier.up_to % per != 0)
        unit = stripe_unit_price(tier.unit_amount_decimal, 1)
        tiers.append(PriceTier(up_to, unit.stripe_amount_decimal, tier.flat_amount))
    per_unit = len(tiers) == 1 and tiers[0].flat_amount == 0
    org = terms.contract_org
    return PricePlan(
        catalog_key=key,
        book=book.name,
        plan=terms.plan,
        interval=Interval.MONTH,  # usage is always billed monthly, in arrears
        product_key=meter_product_key(book.name, meter_price.meter),
        nickname=nickname,
        currency=book.currency,
        usage_type="metered",
        unit_amount_decimal=tiers[0].unit_amount_decimal if per_unit else None,
        tiers=() if per_unit else tuple(tiers),
        meter=meter_price.meter,
        contract_org_id=org if org and key.endswith(f":contract:{org}") else None,
        approximate=approximate,
    )


# --------------------------------------------------------------------------- sync


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
                    idempotency_key=f"catalog:{item.catalog_key}:v1",
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
                    idempotency_key=f"catalog:{item.catalog_key}:v1",
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
            desired = item.terms(stripe_meter_id)
            found = existing.get(item.lookup_key)
            local_version = self._local_version(item.catalog_key)
            note = (
                "approximate: book price rounded to 12 decimal places" if item.approximate else ""
            )
            if found is None:
                version = local_version
                price = self._create_price(item, product_ids, desired, version, transfer=False)
                result = CatalogResult(
                    item.catalog_key,
                    CatalogKind.PRICE,
                    CatalogAction.CREATED,
                    price.stripe_price_id,
                    note,
                    approximate=item.approximate,
                )
            elif found.terms == desired:
                version = max(local_version, _version_of(found))
                price = found
                result = CatalogResult(
                    item.catalog_key,
                    CatalogKind.PRICE,
                    CatalogAction.VERIFIED,
                    price.stripe_price_id,
                    note,
                    approximate=item.approximate,
                )
            elif repair:
                version = max(local_version, _version_of(found)) + 1
                price = self._create_price(item, product_ids, desired, version, transfer=True)
                result = CatalogResult(
                    item.catalog_key,
                    CatalogKind.PRICE,
                    CatalogAction.REPAIRED,
                    price.stripe_price_id,
                    f"v{version} replaces {found.stripe_price_id}, lookup key moved; {note}".strip(
                        "; "
                    ),
                    desired.describe(),
                    found.terms.describe(),
                    item.approximate,
                )
            else:
                results.append(
                    CatalogResult(
                        item.catalog_key,
                        CatalogKind.PRICE,
                        CatalogAction.DRIFTED,
                        found.stripe_price_id,
                        "Stripe prices are immutable: run with --repair to create a new version",
                        desired.describe(),
                        found.terms.describe(),
                        item.approximate,
                    )
                )
                log.warning(
                    "catalog.price_drifted",
                    catalog_key=item.catalog_key,
                    stripe_price_id=found.stripe_price_id,
                    book_terms=desired.describe(),
                    stripe_terms=found.terms.describe(),
                )
                continue
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
            results.append(result)

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
            spec, idempotency_key=f"catalog:{item.catalog_key}:v{version}"
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
        meter: Meter | None = None,
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
            row.meter = meter.value if meter else None
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


def verify_catalog(gateway: CatalogGateway, book: PriceBook) -> CatalogSyncReport:
    """Read-only drift check of the book's prices: lists Stripe, creates and records nothing.

    A price missing in Stripe, or whose terms differ from the book's, is `drifted`.
    """
    plan = plan_catalog(book)
    meters = {m.event_name: m.stripe_meter_id for m in gateway.list_meters()}
    meter_ids = {item.catalog_key: meters.get(item.event_name) for item in plan.meters}
    existing = {
        p.lookup_key: p
        for p in gateway.list_prices([item.lookup_key for item in plan.prices])
        if p.lookup_key
    }
    results: list[CatalogResult] = []
    for item in plan.prices:
        desired = item.terms(meter_ids.get(item.meter_key) if item.meter_key else None)
        found = existing.get(item.lookup_key)
        if found is None:
            action, stripe_id, note, stripe_terms = (
                CatalogAction.DRIFTED,
                "",
                "missing in Stripe: run `billing stripe sync-catalog`",
                None,
            )
        elif found.terms == desired:
            action, stripe_id, note, stripe_terms = (
                CatalogAction.VERIFIED,
                found.stripe_price_id,
                "",
                None,
            )
        else:
            action, stripe_id, note, stripe_terms = (
                CatalogAction.DRIFTED,
                found.stripe_price_id,
                "Stripe's price differs from the book",
                found.terms.describe(),
            )
        results.append(
            CatalogResult(
                item.catalog_key,
                CatalogKind.PRICE,
                action,
                stripe_id,
                note,
                desired.describe() if action is CatalogAction.DRIFTED else None,
                stripe_terms,
                item.approximate,
            )
        )
    return CatalogSyncReport(book.name, tuple(results))

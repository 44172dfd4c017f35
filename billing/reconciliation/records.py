"""What reconciliation reads from our records: orgs of customers, component ids, ledger facts."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from billing.core.components import MINIMUM, MINIMUM_TOPUP, SEATS
from billing.core.meters import Interval, Meter
from billing.core.periods import Period, month_period_of, term_containing
from billing.pricing.book import MeterPrice, PriceBookError, UnknownTermsError
from billing.pricing.book_cache import BookCache
from billing.reconciliation.component_map import ComponentMap
from billing.reconciliation.traces import MeterFacts
from models.ledger import OrgPlanChange, ResourceReport, UsageEvent, decimal_sum
from models.reconciliation import Reconciliation
from models.stripe_records import (
    StripeCatalogEntry,
    StripeCustomerRecord,
    StripeSubscriptionItemRecord,
)


def org_of(session: Session, stripe_customer_id: str) -> str | None:
    return session.exec(
        select(StripeCustomerRecord.org_id).where(
            StripeCustomerRecord.stripe_customer_id == stripe_customer_id
        )
    ).first()


def usage_period_ending(session: Session, org_id: str, boundary: datetime) -> Period:
    """The monthly usage period that ends at `boundary`, on the subscription's anchor."""
    return usage_period_containing(session, org_id, boundary - timedelta(seconds=1))


def usage_period_containing(session: Session, org_id: str, at: datetime) -> Period:
    """The monthly usage period holding `at`, anchored at the start of the subscription that
    holds it and cut short where the ledger ends that subscription (a plan change or a
    cancellation, SPEC §10); calendar months before the first subscription."""
    starts = session.exec(
        select(OrgPlanChange.at)
        .where(OrgPlanChange.org_id == org_id)
        .order_by(col(OrgPlanChange.at))
    ).all()
    begun = [start for start in starts if start <= at]
    if not begun:
        return month_period_of(at)
    anchor = begun[-1]
    period = term_containing(anchor, Interval.MONTH, at)
    ends = next((start for start in starts if start > anchor), None)
    if ends is not None and ends < period.period_end:
        return Period(period.period_start, ends)
    return period


def component_map(session: Session, org_id: str) -> ComponentMap:
    seat_prices: set[str] = set()
    meters: dict[str, str] = {}
    entries = session.exec(
        select(StripeCatalogEntry).where(StripeCatalogEntry.kind == "price")
    ).all()
    for entry in entries:
        if entry.stripe_price_id is None:
            continue
        if entry.meter is None:
            seat_prices.add(entry.stripe_price_id)
        else:
            meters[entry.stripe_price_id] = _component(entry.meter)
    seat_items: set[str] = set()
    items = session.exec(
        select(StripeSubscriptionItemRecord).where(StripeSubscriptionItemRecord.org_id == org_id)
    ).all()
    for item in items:
        if item.component == SEATS:
            seat_items.add(item.stripe_subscription_item_id)
            seat_prices.add(item.stripe_price_id)
        else:
            meters[item.stripe_price_id] = _component(item.component)
    return ComponentMap(frozenset(seat_prices), frozenset(seat_items), meters)


_METERS = frozenset(meter.value for meter in Meter)


def _component(meter: str) -> str:
    """A metered price's component: its meter code, `minimum` for the top-up's meter."""
    return MINIMUM if meter == MINIMUM_TOPUP else meter


def meter_ids(session: Session, book: str | None = None) -> dict[str, str]:
    """Stripe meter id by component (`minimum` for the top-up's meter, which every book with a
    minimum has: `book` picks the org's)."""
    rows = session.exec(select(StripeCatalogEntry).where(StripeCatalogEntry.kind == "meter")).all()
    return {
        _component(row.meter): row.stripe_meter_id
        for row in rows
        if row.meter and row.stripe_meter_id and (book is None or row.book == book)
    }


def meter_facts(session: Session, org_id: str, period: Period) -> dict[str, MeterFacts]:
    connection = session.connection()
    usage = table_of(UsageEvent)
    rows = connection.execute(
        sa.select(usage.c.meter, sa.func.count(), decimal_sum(connection, usage.c.quantity))
        .where(
            usage.c.org_id == org_id,
            usage.c.at >= period.period_start,
            usage.c.at < period.period_end,
        )
        .group_by(usage.c.meter)
    )
    facts = {
        meter: MeterFacts(int(count), Decimal(total or 0), "usage events")
        for meter, count, total in rows
    }
    reports = table_of(ResourceReport)
    count = connection.execute(
        sa.select(sa.func.count()).where(
            reports.c.org_id == org_id,
            reports.c.at >= period.period_start,
            reports.c.at < period.period_end,
        )
    ).scalar_one()
    if count:
        facts["iac_resource_hours"] = MeterFacts(
            int(count), Decimal(0), "resource reports (peak per stack and hour, summed)"
        )
    return facts


def hold_state(session: Session, stripe_invoice_id: str) -> tuple[int, bool]:
    """How many times the invoice was reconciled, and whether the latest left it held by us."""
    rows = session.exec(
        select(Reconciliation.held)
        .where(Reconciliation.stripe_invoice_id == stripe_invoice_id)
        .order_by(col(Reconciliation.id).desc())
    ).all()
    return len(rows), bool(rows and rows[0])


def latest_statuses(session: Session, invoice_ids: Collection[str]) -> dict[str, str | None]:
    if not invoice_ids:
        return {}
    latest = (
        sa.select(sa.func.max(col(Reconciliation.id)))
        .where(col(Reconciliation.stripe_invoice_id).in_(list(invoice_ids)))
        .group_by(col(Reconciliation.stripe_invoice_id))
    )
    rows = session.exec(
        select(Reconciliation.stripe_invoice_id, Reconciliation.invoice_status).where(
            col(Reconciliation.id).in_(latest)
        )
    ).all()
    return dict(rows)


def table_of(model: type[Any]) -> sa.Table:
    table = model.__table__
    assert isinstance(table, sa.Table)
    return table


def meter_prices(session: Session, books: BookCache) -> dict[str, MeterPrice]:
    """The book's meter price behind each metered Stripe price of the catalog, by price id."""
    found: dict[str, MeterPrice] = {}
    entries = session.exec(
        select(StripeCatalogEntry).where(
            StripeCatalogEntry.kind == "price", col(StripeCatalogEntry.meter).is_not(None)
        )
    ).all()
    for entry in entries:
        if entry.stripe_price_id is None or entry.plan is None or entry.meter not in _METERS:
            continue  # a seat price, or the minimum top-up's (not a book meter price)
        try:
            terms = books.terms(entry.book, entry.plan, None, entry.contract_org_id or "")
        except (PriceBookError, UnknownTermsError):
            continue  # a plan the book no longer has: its price cannot be projected
        price = terms.meters.get(Meter(entry.meter))
        if price is not None:
            found[entry.stripe_price_id] = price
    return found

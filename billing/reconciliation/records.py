"""What reconciliation reads from our records: orgs of customers, component ids, ledger facts."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from billing.core.components import SEATS
from billing.core.meters import Interval
from billing.core.periods import Period, month_period_of, term_containing
from billing.reconciliation.match import ComponentMap, ExpectedAdjustment, MeterFacts
from billing.stripe_gateway.records import StripeInvoice
from models.ledger import Org, ResourceReport, UsageEvent, decimal_sum
from models.push_records import SeatPush, SeatPushKind, UsageAdjustment
from models.reconciliation import Reconciliation
from models.stripe_records import (
    StripeCatalogEntry,
    StripeCustomerRecord,
    StripeSubscriptionItemRecord,
    StripeSubscriptionRecord,
    WriteStatus,
)


def pushed_prorations(
    session: Session, org_id: str, after: datetime, until: datetime
) -> set[datetime]:
    """`proration_at` of the org's seat steps that reached Stripe in `[after, until)` with a
    prorated amount (the seat sync's records). A step pushed in the very second Stripe created
    an invoice came after it (Stripe drafts at the period end before the worker acts on it), so
    it is on the next one."""
    rows = session.exec(
        select(SeatPush.proration_at).where(
            SeatPush.org_id == org_id,
            SeatPush.kind == SeatPushKind.STEP,
            SeatPush.status == WriteStatus.DONE,
            SeatPush.proration_behavior == "create_prorations",
            col(SeatPush.finished_at) >= after,
            col(SeatPush.finished_at) < until,
        )
    ).all()
    return {at for at in rows if at is not None}


def org_of(session: Session, stripe_customer_id: str) -> str | None:
    return session.exec(
        select(StripeCustomerRecord.org_id).where(
            StripeCustomerRecord.stripe_customer_id == stripe_customer_id
        )
    ).first()


def usage_period_ending(session: Session, org_id: str, boundary: datetime) -> Period:
    """The monthly usage period that ends at `boundary`, on the subscription's anchor."""
    sub = session.get(StripeSubscriptionRecord, org_id)
    org = session.get(Org, org_id)
    anchor = sub.term_start_at if sub else (org.term_start_at if org else None)
    last_second = boundary - timedelta(seconds=1)
    if anchor is None or anchor > last_second:
        return month_period_of(last_second)
    return term_containing(anchor, Interval.MONTH, last_second)


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
            meters[entry.stripe_price_id] = entry.meter
    seat_items: set[str] = set()
    items = session.exec(
        select(StripeSubscriptionItemRecord).where(StripeSubscriptionItemRecord.org_id == org_id)
    ).all()
    for item in items:
        if item.component == SEATS:
            seat_items.add(item.stripe_subscription_item_id)
            seat_prices.add(item.stripe_price_id)
        else:
            meters[item.stripe_price_id] = item.component
    return ComponentMap(frozenset(seat_prices), frozenset(seat_items), meters)


def meter_ids(session: Session) -> dict[str, str]:
    rows = session.exec(select(StripeCatalogEntry).where(StripeCatalogEntry.kind == "meter")).all()
    return {row.meter: row.stripe_meter_id for row in rows if row.meter and row.stripe_meter_id}


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


def adjustments(session: Session, invoice: StripeInvoice) -> list[ExpectedAdjustment]:
    item_ids = [
        line.stripe_invoice_item_id for line in invoice.lines if line.stripe_invoice_item_id
    ]
    if not item_ids:
        return []
    rows = session.exec(
        select(UsageAdjustment).where(col(UsageAdjustment.stripe_invoice_item_id).in_(item_ids))
    ).all()
    return [
        ExpectedAdjustment(
            stripe_invoice_item_id=row.stripe_invoice_item_id or "",
            meter=row.meter,
            period_start=row.period_start_at.isoformat(),
            quantity_delta=row.quantity_delta,
            amount=row.amount,
        )
        for row in rows
    ]


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

"""One org as support sees it (read-only): plan history, seats, invoices, daily usage, quotas.

Everything comes from our own records: the ledger (plan changes, seat changes, usage events,
resource reports), the Stripe records (customer and subscription ids), the stored
reconciliations and the webhook inbox (invoice numbers and hosted pages). Nothing here calls
Stripe, so the page answers even when Stripe does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from billing.core.meters import Interval, Meter
from billing.core.periods import Period, PeriodError, month_period, parse_instant, term_periods
from billing.ledger.plan_timeline import schedule_text
from billing.pricing.book import PriceBookError, Terms, UnknownTermsError
from billing.pricing.book_cache import BookCache
from billing.pricing.resource_hours import ResourceReport as Report
from billing.pricing.resource_hours import resource_hours
from billing.reconciliation.component_map import ADJUSTMENT
from billing.reconciliation.explain import ExplainContext, LateEvent
from billing.reconciliation.queries import InvoiceFacts, invoice_facts
from billing.reconciliation.records import table_of, usage_period_containing
from models.ledger import Org, OrgPlanChange, ResourceReport, SeatChangeRecord, UsageEvent
from models.ledger import decimal_sum as sql_decimal_sum
from models.quota_records import QuotaEnvironment, QuotaEvent, QuotaUsage
from models.reconciliation import Reconciliation
from models.stripe_records import StripeCustomerRecord, StripeSubscriptionRecord

DAY = timedelta(days=1)


@dataclass(frozen=True)
class InvoiceRow:
    """An invoice by its latest reconciliation, with what Stripe's events told of it."""

    reconciliation: Reconciliation
    facts: InvoiceFacts


@dataclass(frozen=True)
class QuotaState:
    quota: str
    limit: int | None  # None = unlimited
    mode: str
    used: int  # this month's durable checkpoint (environments: live now)
    denied_or_exceeded: tuple[QuotaEvent, ...] = ()


@dataclass(frozen=True)
class MeterUsage:
    """One meter's usage per UTC day over the last and the current usage periods."""

    meter: str
    display_name: str
    unit: str
    days: Mapping[date, Decimal]


@dataclass(frozen=True)
class OrgSummary:
    org: Org
    terms: Terms | None
    plan_changes: tuple[OrgPlanChange, ...]
    scheduled: str | None  # "Team until 2028-01-01, then Free" (SPEC §10), or None
    seat_changes: tuple[SeatChangeRecord, ...]
    seat_terms: tuple[Period, ...]
    stripe_customer_id: str | None
    stripe_subscription_id: str | None
    invoices: tuple[InvoiceRow, ...]
    last_period: Period
    current_period: Period
    usage: tuple[MeterUsage, ...]
    quotas: tuple[QuotaState, ...] = ()
    units: Mapping[str, str] = field(default_factory=dict)
    display_names: Mapping[str, str] = field(default_factory=dict)


def org_summary(
    session: Session, org_id: str, now: datetime, books: BookCache
) -> OrgSummary | None:
    """The org's page, or None when the ledger has no such org."""
    org = session.get(Org, org_id)
    if org is None:
        return None
    terms = _terms(books, org)
    plan_changes = tuple(
        session.exec(
            select(OrgPlanChange)
            .where(OrgPlanChange.org_id == org_id)
            .order_by(col(OrgPlanChange.at), col(OrgPlanChange.id))
        ).all()
    )
    seat_changes = tuple(
        session.exec(
            select(SeatChangeRecord)
            .where(SeatChangeRecord.org_id == org_id)
            .order_by(col(SeatChangeRecord.at), col(SeatChangeRecord.id))
        ).all()
    )
    customer = session.get(StripeCustomerRecord, org_id)
    subscription = session.get(StripeSubscriptionRecord, org_id)
    current = usage_period_containing(session, org_id, now)
    last = usage_period_containing(session, org_id, current.period_start - timedelta(seconds=1))
    units, names = meter_labels(books, org.book)
    return OrgSummary(
        org=org,
        terms=terms,
        plan_changes=plan_changes,
        scheduled=schedule_text(session, org_id, now, books),
        seat_changes=seat_changes,
        seat_terms=seat_terms(plan_changes, now),
        stripe_customer_id=customer.stripe_customer_id if customer else None,
        stripe_subscription_id=subscription.stripe_subscription_id if subscription else None,
        invoices=org_invoices(session, org_id),
        last_period=last,
        current_period=current,
        usage=daily_usage(
            session, org_id, Period(last.period_start, current.period_end), units, names
        ),
        quotas=quota_states(session, org_id, terms, current),
        units=units,
        display_names=names,
    )


def _terms(books: BookCache, org: Org) -> Terms | None:
    try:
        return books.terms(org.book, org.plan, org.interval, org.id)
    except (PriceBookError, UnknownTermsError):
        return None


def meter_labels(books: BookCache, book_name: str) -> tuple[dict[str, str], dict[str, str]]:
    """Each meter's unit (`message`) and display name, as the book defines them."""
    try:
        definitions = books.book(book_name).meter_definitions
    except PriceBookError:
        return {}, {}
    units = {meter.value: d.unit for meter, d in definitions.items()}
    names = {meter.value: d.display_name for meter, d in definitions.items()}
    return units, names


def seat_terms(plan_changes: Sequence[OrgPlanChange], until_at: datetime) -> tuple[Period, ...]:
    """Every seat term of each plan segment that started before `until_at` (a plan change
    starts a new term)."""
    found: list[Period] = []
    for index, change in enumerate(plan_changes):
        try:
            interval = Interval(change.interval)
        except ValueError:
            continue  # a cancellation: no subscription, no term
        ends = plan_changes[index + 1].at if index + 1 < len(plan_changes) else None
        terms = term_periods(change.at, interval, min(ends, until_at) if ends else until_at)
        found.extend(
            Period(term.period_start, min(term.period_end, ends) if ends else term.period_end)
            for term in terms
        )
    return tuple(found)


def org_invoices(session: Session, org_id: str) -> tuple[InvoiceRow, ...]:
    """Every invoice of the org by its latest reconciliation, newest first."""
    latest = (
        sa.select(sa.func.max(col(Reconciliation.id)))
        .where(col(Reconciliation.org_id) == org_id)
        .group_by(col(Reconciliation.stripe_invoice_id))
    )
    rows = session.exec(
        select(Reconciliation)
        .where(col(Reconciliation.id).in_(latest))
        .order_by(col(Reconciliation.id).desc())
    ).all()
    facts = invoice_facts(session, [row.stripe_invoice_id for row in rows])
    return tuple(InvoiceRow(row, facts.get(row.stripe_invoice_id, InvoiceFacts())) for row in rows)


def _day_of(connection: sa.Connection, column: sa.ColumnElement[datetime]) -> sa.ColumnElement[str]:
    """`YYYY-MM-DD` of a UTC instant column (SQLite keeps naive UTC text)."""
    if connection.dialect.name == "sqlite":
        return sa.func.substr(column, 1, 10)
    return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")


def daily_usage(
    session: Session,
    org_id: str,
    span: Period,
    units: Mapping[str, str],
    names: Mapping[str, str],
) -> tuple[MeterUsage, ...]:
    """Each meter's total per UTC day in `span`; resource-hours from the reports (peak per
    stack and clock hour, summed), the same rule as the invoice's."""
    connection = session.connection()
    usage = table_of(UsageEvent)
    day = _day_of(connection, usage.c.at)
    rows = connection.execute(
        sa.select(usage.c.meter, day, sql_decimal_sum(connection, usage.c.quantity))
        .where(usage.c.org_id == org_id, usage.c.at >= span.period_start)
        .where(usage.c.at < span.period_end)
        .group_by(usage.c.meter, day)
    )
    per_meter: dict[str, dict[date, Decimal]] = {}
    for meter, text, total in rows:
        per_meter.setdefault(str(meter), {})[date.fromisoformat(str(text))] = Decimal(total or 0)
    hours = _daily_resource_hours(session, org_id, span)
    if hours:
        per_meter[Meter.IAC_RESOURCE_HOURS.value] = hours
    return tuple(
        MeterUsage(meter, names.get(meter, meter), units.get(meter, "unit"), days)
        for meter, days in sorted(per_meter.items())
    )


def _daily_resource_hours(session: Session, org_id: str, span: Period) -> dict[date, Decimal]:
    reports = [
        Report(row.stack, row.resource_count, row.at)
        for row in session.exec(
            select(ResourceReport)
            .where(ResourceReport.org_id == org_id, col(ResourceReport.at) < span.period_end)
            .order_by(col(ResourceReport.at), col(ResourceReport.id))
        ).all()
    ]
    if not reports:
        return {}
    found: dict[date, Decimal] = {}
    start = span.period_start.replace(hour=0, minute=0, second=0, microsecond=0)
    while start < span.period_end:
        hours = resource_hours(reports, Period(start, start + DAY))
        if hours:
            found[start.date()] = Decimal(hours)
        start += DAY
    return found


def quota_states(
    session: Session, org_id: str, terms: Terms | None, month: Period
) -> tuple[QuotaState, ...]:
    """The org's quotas (zenaton books have them), with this month's durable counts."""
    if terms is None or not terms.quotas:
        return ()
    used = {
        row.quota: row.used
        for row in session.exec(
            select(QuotaUsage).where(
                QuotaUsage.org_id == org_id, QuotaUsage.period_start == month.period_start
            )
        ).all()
    }
    live = len(
        session.exec(
            select(QuotaEnvironment.id).where(
                QuotaEnvironment.org_id == org_id, col(QuotaEnvironment.deleted_at).is_(None)
            )
        ).all()
    )
    events = session.exec(
        select(QuotaEvent)
        .where(QuotaEvent.org_id == org_id)
        .order_by(col(QuotaEvent.last_at).desc())
        .limit(50)
    ).all()
    states = []
    for quota, limit in terms.quotas.items():
        count = live if quota.value == "environments" else used.get(quota.value, 0)
        mine = tuple(e for e in events if e.quota == quota.value)
        states.append(QuotaState(quota.value, limit.limit, limit.mode.value, count, mine))
    return tuple(states)


def late_events(session: Session, org_id: str, periods: Sequence[Period]) -> list[LateEvent]:
    """Usage events of `periods` received after each period ended (its invoice was drafted)."""
    found: list[LateEvent] = []
    for period in periods:
        rows = session.exec(
            select(UsageEvent)
            .where(UsageEvent.org_id == org_id)
            .where(
                col(UsageEvent.at) >= period.period_start, col(UsageEvent.at) < period.period_end
            )
            .where(col(UsageEvent.received_at) >= period.period_end)
            .order_by(col(UsageEvent.received_at))
            .limit(100)
        ).all()
        found.extend(
            LateEvent(row.event_id, row.meter, row.quantity, row.at, row.received_at)
            for row in rows
        )
    return found


def explain_context(
    session: Session,
    reconciliation: Reconciliation,
    lines: Sequence[Mapping[str, Any]],
    now: datetime,
    books: BookCache,
) -> ExplainContext:
    """What explaining one reconciliation's lines needs beyond their traces: the book's units,
    the org's seat terms, and the late events behind an adjustment line."""
    org = session.get(Org, reconciliation.org_id) if reconciliation.org_id else None
    if org is None:
        return ExplainContext(currency=reconciliation.currency)
    plan_changes = session.exec(
        select(OrgPlanChange).where(OrgPlanChange.org_id == org.id).order_by(col(OrgPlanChange.at))
    ).all()
    units, names = meter_labels(books, org.book)
    return ExplainContext(
        currency=reconciliation.currency,
        units=units,
        display_names=names,
        seat_terms=seat_terms(plan_changes, now),
        late_events=late_events(session, org.id, _late_periods(lines)),
    )


def _late_periods(lines: Sequence[Mapping[str, Any]]) -> list[Period]:
    """The periods an adjustment line's trace corrects (`2027-01`, or `start/end`)."""
    found = []
    for line in lines:
        if line.get("component") != ADJUSTMENT:
            continue
        expected = (line.get("trace") or {}).get("expected") or {}
        for late in expected.get("late_periods") or []:
            label = str(late.get("period", ""))
            try:
                if "/" in label:
                    start, end = label.split("/", 1)
                    found.append(Period(parse_instant(start), parse_instant(end)))
                else:
                    found.append(month_period(label))
            except (ValueError, PeriodError):
                continue
    return found

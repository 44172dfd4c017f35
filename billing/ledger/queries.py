"""The ledger's read side: each org's plan segments, seat changes, usage and resource-hours of a
period loaded (one org, or every org set-based), and the expected invoices computed from them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from billing.core.meters import Meter
from billing.core.periods import Period, from_unix, to_unix
from billing.ledger.credit_ledger import grant_balances, org_filter
from billing.ledger.expected_invoice import (
    ExpectedInvoice,
    OrgLedger,
    PlanSegment,
    UnknownOrgError,
    compute_expected_invoice,
)
from billing.pricing.book_cache import BookCache
from billing.pricing.proration import SeatChange
from billing.pricing.resource_hours import hour_bounds, resource_hours_by_org
from models.ledger import (
    Org,
    OrgPlanChange,
    ResourceReport,
    SeatChangeRecord,
    UsageEvent,
    decimal_sum,
)


def expected_invoice(
    session: Session, org_id: str, period: Period, books: BookCache | None = None
) -> ExpectedInvoice:
    """The expected invoice of one org; UnknownOrgError when it has none for the period."""
    connection = session.connection()
    if connection.execute(sa.select(_t(Org).c.id).where(_t(Org).c.id == org_id)).first() is None:
        raise UnknownOrgError(f"unknown org {org_id!r}")
    ledgers = _load_ledgers(connection, period, org_id, with_credits=True)
    ledger = next(ledgers, None)
    invoice = compute_expected_invoice(ledger, period, books or BookCache()) if ledger else None
    if invoice is None:
        raise UnknownOrgError(f"org {org_id!r} had no subscription before {period.label()} ended")
    return invoice


def expected_invoices_for_period(
    session: Session, period: Period, books: BookCache | None = None
) -> Iterator[ExpectedInvoice]:
    """The expected invoice of every org subscribed before the period ended, set-based:
    one query per table for all orgs (usage grouped by org and meter in SQL, resource reports
    streamed in org order)."""
    books = books or BookCache()
    for ledger in _load_ledgers(session.connection(), period, None, with_credits=True):
        invoice = compute_expected_invoice(ledger, period, books)
        if invoice is not None:
            yield invoice


def _load_ledgers(
    connection: sa.Connection,
    period: Period,
    org_id: str | Collection[str] | None,
    received_before: datetime | None = None,
    *,
    with_credits: bool = False,
) -> Iterator[OrgLedger]:
    """Each org's ledger for `period`; with `received_before`, only the usage and resource
    reports received before that instant (what the ledger knew then); `with_credits`, the
    balances of its credit grants before the period too (the expected invoice's credit line)."""
    plans = _t(OrgPlanChange)
    seats = _t(SeatChangeRecord)

    def known(table: sa.Table) -> list[Any]:
        return [] if received_before is None else [table.c.received_at < received_before]

    segments: dict[str, list[PlanSegment]] = {}
    rows = connection.execute(
        sa.select(
            plans.c.org_id,
            plans.c.at,
            plans.c.book,
            plans.c.plan,
            plans.c.interval,
            plans.c.cancel_credit,
        )
        # A change at the period's end is loaded too: it may credit the term it ends early.
        .where(plans.c.at <= period.period_end, *org_filter(plans, org_id))
        .order_by(plans.c.org_id, plans.c.at)
    )
    for row in rows:
        segments.setdefault(row.org_id, []).append(
            PlanSegment(row.at, row.book, row.plan, row.interval, row.cancel_credit)
        )
    seat_changes: dict[str, list[SeatChange]] = {}
    rows = connection.execute(
        sa.select(seats.c.org_id, seats.c.at, seats.c.seat_count)
        .where(seats.c.at < period.period_end, *org_filter(seats, org_id))
        .order_by(seats.c.org_id, seats.c.at, seats.c.id)
    )
    for row in rows:
        seat_changes.setdefault(row.org_id, []).append(SeatChange(row.at, row.seat_count))
    usage = _t(UsageEvent)
    totals = _usage_totals(connection, period, [*org_filter(usage, org_id), *known(usage)])
    rows_of_reports = _resource_rows(connection, period, org_id, known(_t(ResourceReport)))
    hours = dict(resource_hours_by_org(rows_of_reports, period))
    credits = grant_balances(connection, period, org_id) if with_credits else {}
    for org, org_segments in segments.items():
        yield OrgLedger(
            org_id=org,
            plan_segments=org_segments,
            seat_changes=seat_changes.get(org, ()),
            usage=totals.get(org, {}),
            resource_hours=hours.get(org, 0),
            credits=credits.get(org, ()),
        )


def _usage_totals(
    connection: sa.Connection, period: Period, filters: list[Any]
) -> dict[str, dict[Meter, Decimal]]:
    """Each org's usage total per meter in the period, summed in SQL."""
    usage = _t(UsageEvent)
    totals: dict[str, dict[Meter, Decimal]] = {}
    sums = connection.execute(
        sa.select(usage.c.org_id, usage.c.meter, decimal_sum(connection, usage.c.quantity))
        .where(usage.c.at >= period.period_start, usage.c.at < period.period_end, *filters)
        .group_by(usage.c.org_id, usage.c.meter)
    )
    for org, meter, quantity in sums:
        totals.setdefault(org, {})[Meter(meter)] = _plain(quantity)
    return totals


def _resource_rows(
    connection: sa.Connection,
    period: Period,
    org_id: str | Collection[str] | None,
    known: list[Any],
) -> Iterable[tuple[str, str, int, int]]:
    """Reports of the period's hours plus, per stack, the last report before them (carried),
    ordered by org, stack, time and arrival, streamed."""
    reports = _t(ResourceReport)
    start_unix, end_unix = hour_bounds(period)
    start, end = from_unix(start_unix), from_unix(end_unix)
    filters = [*org_filter(reports, org_id), *known]
    columns = (
        reports.c.org_id,
        reports.c.stack,
        reports.c.at,
        reports.c.resource_count,
        reports.c.id,
    )
    ranked = (
        sa.select(
            *columns,
            sa.func.row_number()
            .over(
                partition_by=(reports.c.org_id, reports.c.stack),
                order_by=(reports.c.at.desc(), reports.c.id.desc()),
            )
            .label("rank"),
        )
        .where(reports.c.at < start, *filters)
        .subquery()
    )
    carried = sa.select(
        ranked.c.org_id, ranked.c.stack, ranked.c.at, ranked.c.resource_count, ranked.c.id
    ).where(ranked.c.rank == 1)
    inside = sa.select(*columns).where(reports.c.at >= start, reports.c.at < end, *filters)
    both = sa.union_all(carried, inside).subquery()
    query = sa.select(both.c.org_id, both.c.stack, both.c.at, both.c.resource_count).order_by(
        both.c.org_id, both.c.stack, both.c.at, both.c.id
    )
    if org_id is None:
        # Every org's reports are streamed (a server-side cursor on PostgreSQL); one org's are
        # few, and a cursor would cost extra round trips. The options go on this statement
        # only: Connection.execution_options() would change the caller's connection in place.
        query = query.execution_options(stream_results=True, yield_per=20_000)
    result = connection.execute(query)
    for org, stack, at, count in result:
        yield org, stack, to_unix(at), count


def _plain(quantity: Decimal) -> Decimal:
    """Drop the column scale's trailing zeros: Decimal('2.500000000000') -> Decimal('2.5')."""
    if quantity == quantity.to_integral_value():
        return quantity.quantize(Decimal(1))
    return quantity.normalize()


def _t(model: type[Any]) -> sa.Table:
    table = model.__table__
    assert isinstance(table, sa.Table)
    return table


def org_ledger(
    session: Session, org_id: str, period: Period, *, received_before: datetime | None = None
) -> OrgLedger | None:
    """One org's ledger for `period` (plan segments and seat changes before its end, usage
    totals and resource-hours within it, only what was received before `received_before` if
    given), or None when it has no plan before the period ends."""
    return next(_load_ledgers(session.connection(), period, org_id, received_before), None)


def org_ledgers(session: Session, org_ids: Collection[str], period: Period) -> dict[str, OrgLedger]:
    """The ledgers of several orgs for `period`, as org_ledger gives each (without credits):
    one query per table for all of them. An org with no plan before the period ends is absent."""
    if not org_ids:
        return {}
    return {
        ledger.org_id: ledger
        for ledger in _load_ledgers(session.connection(), period, org_ids, None)
    }

"""The expected invoice of an org's monthly period, computed from the ledger and the price book.

Lines, in order: the upfront `seats` charge of every seat term that begins in the period (the
full term price for the seat count at the term start or renewal), one `seat_proration` line per
coalesced seat step whose `proration_at` is in the period (billing.pricing.proration), then one
line per meter of the terms in effect at the end of the period, and the `minimum` top-up
computed on those usage lines only (billing.pricing.charge). Seat lines with a zero amount are
left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from billing.core.meters import Interval, Meter
from billing.core.periods import Period, from_unix, to_unix
from billing.pricing.book import Terms
from billing.pricing.book_cache import BookCache
from billing.pricing.charge import SEATS, ChargeLine, usage_lines
from billing.pricing.proration import SeatChange, SeatStep, SeatTerm, seat_terms
from billing.pricing.resource_hours import hour_bounds, resource_hours_by_org
from models.ledger import (
    Org,
    OrgPlanChange,
    ResourceReport,
    SeatChangeRecord,
    UsageEvent,
    decimal_sum,
)

SEAT_PRORATION = "seat_proration"


class UnknownOrgError(LookupError):
    """The org is not in the ledger, or had no subscription before the period ended."""


@dataclass(frozen=True)
class ExpectedLine:
    """One expected invoice line; `amount` in minor units, the other fields explain it."""

    code: str  # "seats", "seat_proration", a meter code, or "minimum"
    quantity: Decimal
    amount: int
    included: Decimal = Decimal(0)
    billable: Decimal = Decimal(0)
    unit_amount_decimal: Decimal = Decimal(0)
    per: int = 1
    period_start: datetime | None = None  # seat lines: the term, or [proration_at, term end)
    period_end: datetime | None = None
    proration_at: datetime | None = None
    from_quantity: int | None = None
    to_quantity: int | None = None
    description: str = ""


@dataclass(frozen=True)
class ExpectedInvoice:
    org_id: str
    period: Period
    currency: str
    book: str
    plan: str
    interval: Interval
    lines: tuple[ExpectedLine, ...]

    @property
    def total_amount(self) -> int:
        return sum(line.amount for line in self.lines)

    def line(self, code: str) -> ExpectedLine | None:
        return next((line for line in self.lines if line.code == code), None)


@dataclass(frozen=True)
class PlanSegment:
    """From `at` on (until the next segment) the org is on this book, plan and interval."""

    at: datetime
    book: str
    plan: str
    interval: str


@dataclass(frozen=True)
class OrgLedger:
    """What the computation needs of one org for one period (plain values, no database)."""

    org_id: str
    plan_segments: Sequence[PlanSegment]  # ordered by `at`
    seat_changes: Sequence[SeatChange] = ()  # ledger order, at < period end
    usage: Mapping[Meter, Decimal] = field(default_factory=dict)  # totals in the period
    resource_hours: int = 0


# --------------------------------------------------------------------------- computation


def compute_expected_invoice(
    ledger: OrgLedger, period: Period, books: BookCache
) -> ExpectedInvoice | None:
    """The expected invoice for `period`, or None when the org had no plan before it ended."""
    segments = [seg for seg in ledger.plan_segments if seg.at < period.period_end]
    if not segments:
        return None
    current = segments[-1]
    terms = books.terms(current.book, current.plan, current.interval, ledger.org_id)
    lines = list(_seat_lines(ledger, period, segments, books))
    usage = dict(ledger.usage)
    if Meter.IAC_RESOURCE_HOURS in terms.meters:
        usage[Meter.IAC_RESOURCE_HOURS] = Decimal(ledger.resource_hours)
    lines.extend(_from_charge_line(line) for line in usage_lines(terms, usage))
    return ExpectedInvoice(
        org_id=ledger.org_id,
        period=period,
        currency=terms.currency,
        book=terms.book,
        plan=terms.plan,
        interval=terms.interval,
        lines=tuple(lines),
    )


def _seat_lines(
    ledger: OrgLedger, period: Period, segments: Sequence[PlanSegment], books: BookCache
) -> Iterator[ExpectedLine]:
    for index, segment in enumerate(segments):
        ends_at = segments[index + 1].at if index + 1 < len(segments) else None
        if ends_at is not None and ends_at <= period.period_start:
            continue
        terms = books.terms(segment.book, segment.plan, segment.interval, ledger.org_id)
        if not terms.seat_unit_amount:
            continue
        schedule = seat_terms(
            segment.at,
            terms.interval,
            terms.seat_unit_amount,
            ledger.seat_changes,
            until_at=period.period_end,
            ends_at=ends_at,
            from_at=period.period_start,
            policy=terms.seat_policy,
        )
        for term in schedule:
            if term.period.period_start in period and term.upfront_amount:
                yield _upfront_line(term, terms)
            for step in term.steps:
                if step.proration_at in period and step.amount:
                    yield _proration_line(step, terms)


def _upfront_line(term: SeatTerm, terms: Terms) -> ExpectedLine:
    count = Decimal(term.seat_count)
    return ExpectedLine(
        code=SEATS,
        quantity=count,
        amount=term.upfront_amount,
        billable=count,
        unit_amount_decimal=Decimal(term.seat_unit_amount),
        period_start=term.period.period_start,
        period_end=term.period.period_end,
        description=f"{term.seat_count} seat(s) × {term.seat_unit_amount} per {terms.interval}",
    )


def _proration_line(step: SeatStep, terms: Terms) -> ExpectedLine:
    delta = Decimal(step.to_quantity - step.from_quantity)
    return ExpectedLine(
        code=SEAT_PRORATION,
        quantity=delta,
        amount=step.amount,
        billable=delta,
        unit_amount_decimal=Decimal(terms.seat_unit_amount or 0),
        period_start=step.proration_at,
        period_end=step.period_end,
        proration_at=step.proration_at,
        from_quantity=step.from_quantity,
        to_quantity=step.to_quantity,
        description=(
            f"seats {step.from_quantity} → {step.to_quantity} from "
            f"{step.proration_at.isoformat()} to the term end {step.period_end.isoformat()}"
        ),
    )


def _from_charge_line(line: ChargeLine) -> ExpectedLine:
    return ExpectedLine(
        code=line.code,
        quantity=line.quantity,
        amount=line.amount,
        included=line.included,
        billable=line.billable,
        unit_amount_decimal=line.unit_amount_decimal,
        per=line.per,
        description=line.description,
    )


# --------------------------------------------------------------------------- queries


def expected_invoice(
    session: Session, org_id: str, period: Period, books: BookCache | None = None
) -> ExpectedInvoice:
    """The expected invoice of one org; UnknownOrgError when it has none for the period."""
    connection = session.connection()
    if connection.execute(sa.select(_t(Org).c.id).where(_t(Org).c.id == org_id)).first() is None:
        raise UnknownOrgError(f"unknown org {org_id!r}")
    ledgers = _load_ledgers(connection, period, org_id)
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
    for ledger in _load_ledgers(session.connection(), period, None):
        invoice = compute_expected_invoice(ledger, period, books)
        if invoice is not None:
            yield invoice


def _load_ledgers(
    connection: sa.Connection, period: Period, org_id: str | None
) -> Iterator[OrgLedger]:
    plans = _t(OrgPlanChange)
    seats = _t(SeatChangeRecord)
    usage = _t(UsageEvent)

    def only(table: sa.Table) -> list[Any]:
        return [] if org_id is None else [table.c.org_id == org_id]

    segments: dict[str, list[PlanSegment]] = {}
    rows = connection.execute(
        sa.select(plans.c.org_id, plans.c.at, plans.c.book, plans.c.plan, plans.c.interval)
        .where(plans.c.at < period.period_end, *only(plans))
        .order_by(plans.c.org_id, plans.c.at)
    )
    for row in rows:
        segments.setdefault(row.org_id, []).append(
            PlanSegment(row.at, row.book, row.plan, row.interval)
        )
    seat_changes: dict[str, list[SeatChange]] = {}
    rows = connection.execute(
        sa.select(seats.c.org_id, seats.c.at, seats.c.seat_count)
        .where(seats.c.at < period.period_end, *only(seats))
        .order_by(seats.c.org_id, seats.c.at, seats.c.id)
    )
    for row in rows:
        seat_changes.setdefault(row.org_id, []).append(SeatChange(row.at, row.seat_count))
    totals: dict[str, dict[Meter, Decimal]] = {}
    sums = connection.execute(
        sa.select(usage.c.org_id, usage.c.meter, decimal_sum(connection, usage.c.quantity))
        .where(
            usage.c.at >= period.period_start,
            usage.c.at < period.period_end,
            *only(usage),
        )
        .group_by(usage.c.org_id, usage.c.meter)
    )
    for org, meter, quantity in sums:
        totals.setdefault(org, {})[Meter(meter)] = _plain(quantity)
    hours = dict(resource_hours_by_org(_resource_rows(connection, period, org_id), period))
    for org, org_segments in segments.items():
        yield OrgLedger(
            org_id=org,
            plan_segments=org_segments,
            seat_changes=seat_changes.get(org, ()),
            usage=totals.get(org, {}),
            resource_hours=hours.get(org, 0),
        )


def _resource_rows(
    connection: sa.Connection, period: Period, org_id: str | None
) -> Iterable[tuple[str, str, int, int]]:
    """Reports of the period's hours plus, per stack, the last report before them (carried),
    ordered by org, stack, time and arrival, streamed."""
    reports = _t(ResourceReport)
    start_unix, end_unix = hour_bounds(period)
    start, end = from_unix(start_unix), from_unix(end_unix)
    org_filter = [] if org_id is None else [reports.c.org_id == org_id]
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
        .where(reports.c.at < start, *org_filter)
        .subquery()
    )
    carried = sa.select(
        ranked.c.org_id, ranked.c.stack, ranked.c.at, ranked.c.resource_count, ranked.c.id
    ).where(ranked.c.rank == 1)
    inside = sa.select(*columns).where(reports.c.at >= start, reports.c.at < end, *org_filter)
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


def org_ledger(session: Session, org_id: str, period: Period) -> OrgLedger | None:
    """One org's ledger for `period` (plan segments and seat changes before its end, usage
    totals and resource-hours within it), or None when it has no plan before the period ends."""
    return next(_load_ledgers(session.connection(), period, org_id), None)

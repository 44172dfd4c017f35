"""An org's subscriptions as the plan ledger holds them: its invoice periods and what is
scheduled (SPEC §10), for `billing preview`, `billing org` and the support pages.

Each plan row starts a subscription; the next row (a change or a cancellation) ends it. Its
monthly usage periods are anchored at its start and the last one is cut short at its end, as
Stripe's invoices are (billing.lifecycle.apply).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from billing.core.meters import Interval
from billing.core.periods import Period, term_period
from billing.pricing.book_cache import BookCache
from billing.pricing.lifecycle import NO_PLAN
from models.ledger import OrgPlanChange


@dataclass(frozen=True)
class Subscription:
    """One subscription of the org: [start, end) on a book, plan and interval."""

    start: datetime
    end: datetime | None
    book: str
    plan: str
    interval: str
    requested_at: datetime | None  # a change scheduled for a term end: when it was asked for


def subscriptions(session: Session, org_id: str) -> list[Subscription]:
    rows = session.exec(
        select(OrgPlanChange).where(OrgPlanChange.org_id == org_id).order_by(col(OrgPlanChange.at))
    ).all()
    found = []
    for index, row in enumerate(rows):
        if row.plan == NO_PLAN:
            continue
        end = rows[index + 1].at if index + 1 < len(rows) else None
        found.append(Subscription(row.at, end, row.book, row.plan, row.interval, row.requested_at))
    return found


def invoice_periods(subs: Sequence[Subscription], until: datetime) -> list[Period]:
    """Every usage period that starts before `until`: monthly from each subscription's start,
    the last one cut short at its end."""
    periods = []
    for sub in subs:
        index = 0
        while True:
            period = term_period(sub.start, Interval.MONTH, index)
            index += 1
            if period.period_start >= until or (sub.end and period.period_start >= sub.end):
                break
            if sub.end and period.period_end > sub.end:
                period = Period(period.period_start, sub.end)
            periods.append(period)
    return periods


def schedule_text(session: Session, org_id: str, now: datetime, books: BookCache) -> str | None:
    """What the ledger holds for later, in words: "Team until 2028-01-01, then Free"."""
    rows = session.exec(
        select(OrgPlanChange).where(OrgPlanChange.org_id == org_id).order_by(col(OrgPlanChange.at))
    ).all()
    current = [row for row in rows if row.at <= now]
    later = [row for row in rows if row.at > now]
    if not current or not later or current[-1].plan == NO_PLAN:
        return None
    now_row, next_row = current[-1], later[0]
    then = "canceled" if next_row.plan == NO_PLAN else _name(books, next_row)
    return f"{_name(books, now_row)} until {next_row.at.date().isoformat()}, then {then}"


def _name(books: BookCache, row: OrgPlanChange) -> str:
    try:
        return books.book(row.book).plan_display_name(row.plan)
    except LookupError:
        return row.plan

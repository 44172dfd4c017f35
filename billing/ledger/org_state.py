"""What the ingestor knows of each org while it checks a batch: its plan now and its timeline
of plan changes (scheduled ones included), loaded once per batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from billing.core.meters import Interval
from billing.ledger.lifecycle_events import Timeline
from billing.pricing.book import PriceBookError, SeatPolicy, Terms, UnknownTermsError
from billing.pricing.book_cache import BookCache
from models.ledger import Org, OrgPlanChange

_IN_CHUNK = 500


@dataclass
class OrgState:
    book: str
    plan: str
    interval: str
    term_start_at: datetime
    subscribed_at: datetime  # the earliest plan change: the org's first subscription
    terms: Terms
    history: dict[datetime, tuple[str, str, str]]
    created_at: datetime | None = None  # set when the org is new in this batch
    requested: dict[datetime, datetime] = field(default_factory=dict)  # scheduled rows

    @property
    def timeline(self) -> Timeline:
        return Timeline(self.history, self.requested)


NO_TERMS = Terms(
    book="?",
    plan="?",
    interval=Interval.MONTH,
    currency="usd",
    seat_unit_amount=None,
    meters={},
    minimum_amount=0,
    quotas={},
    seat_policy=SeatPolicy(),
)


def load_org_states(session: Session, books: BookCache, org_ids: set[str]) -> dict[str, OrgState]:
    """The stored orgs among `org_ids`, each with its plan-change timeline."""
    states: dict[str, OrgState] = {}
    ordered = sorted(org_ids)
    connection = session.connection()  # plain rows: no ORM objects to build for each org
    org_columns = (col(Org.id), col(Org.book), col(Org.plan), col(Org.interval))
    change_columns = (
        col(OrgPlanChange.org_id),
        col(OrgPlanChange.at),
        col(OrgPlanChange.book),
        col(OrgPlanChange.plan),
        col(OrgPlanChange.interval),
        col(OrgPlanChange.requested_at),
    )
    for offset in range(0, len(ordered), _IN_CHUNK):
        chunk = ordered[offset : offset + _IN_CHUNK]
        orgs = connection.execute(
            sa.select(*org_columns, col(Org.term_start_at)).where(col(Org.id).in_(chunk))
        ).all()
        for org_id, book, plan, interval, start_at in orgs:
            try:
                terms = books.terms(book, plan, interval, org_id)
            except (UnknownTermsError, PriceBookError):
                # The book changed under a stored org: its lines get a clear error below.
                terms = NO_TERMS
            states[org_id] = OrgState(book, plan, interval, start_at, start_at, terms, {})
        known = [row[0] for row in orgs]
        if not known:
            continue
        changes = connection.execute(
            sa.select(*change_columns).where(col(OrgPlanChange.org_id).in_(known))
        ).all()
        for org_id, at, book, plan, interval, requested_at in changes:
            state = states[org_id]
            state.history[at] = (book, plan, interval)
            if requested_at is not None:
                state.requested[at] = requested_at
            state.subscribed_at = min(state.subscribed_at, at)
    return states


def plan_row(
    org_id: str, plan: tuple[str, str, str], at: datetime, now: datetime
) -> dict[str, Any]:
    book, name, interval = plan
    return {
        "org_id": org_id,
        "book": book,
        "plan": name,
        "interval": interval,
        "at": at,
        "recorded_at": now,
        "requested_at": None,
        "cancel_credit": None,
    }
